/**
 * Structured logs. With `json` every line is `{"timestamp","level","event",...context}` on stderr;
 * `file` appends the same lines to a file; otherwise warnings and errors print as short text lines
 * (journald adds its own timestamps), and lower levels only when `verbose`. Nothing below `level`
 * (default info) is written anywhere: per-batch events are debug, so a busy worker stays quiet.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type Level = 'debug' | 'info' | 'warn' | 'error';

/** Events documented in docs/reference.md, plus metaguard's own. */
export type LogEvent =
  | 'queue_dispatched'
  | 'queue_completed'
  | 'queue_requeued'
  | 'batch_claimed'
  | 'heartbeat_timeout'
  | 'worker_started'
  | 'worker_draining'
  | 'worker_stopped'
  | 'case_timeout'
  | 'case_oom'
  | 'case_crash'
  | 'dead_lettered'
  | 'evaluation_started'
  | 'evaluation_finished'
  | 'backend_error'
  | 'backend_reconnected'
  | 'artifact_reread'
  | 'watchdog_recovered'
  | 'systemd_notify_failed'
  | 'batch_rejected'
  | 'watchdog_stalled'
  | 'native_unavailable'
  | 'endpoint_unusable'
  | 'job_withdrawn'
  | 'dashboard_started'
  | 'dashboard_action'
  | 'forged_entry'
  | 'queue_state_lost'
  | 'malformed_record'
  | 'redis_eviction_policy'

  | 'batch_failed'
  | 'unexpected_error'
  | 'evaluation_preparing';

export const levels: readonly Level[] = ['debug', 'info', 'warn', 'error'];

export interface LoggerOptions {
  /** Least level written. Per-batch events (batch_claimed, queue_dispatched, queue_completed) are debug. @defaultValue 'info' */
  level?: Level;
  json?: boolean;
  file?: string;
  verbose?: boolean;
  stream?: NodeJS.WritableStream;
}

export interface Logger {
  log(level: Level, event: LogEvent, context?: Record<string, unknown>): void;
  info(event: LogEvent, context?: Record<string, unknown>): void;
  warn(event: LogEvent, context?: Record<string, unknown>): void;
  error(event: LogEvent, context?: Record<string, unknown>): void;
  child(context: Record<string, unknown>): Logger;
}

export function createLogger(options: LoggerOptions = {}, base: Record<string, unknown> = {}): Logger {
  const stream = options.stream ?? process.stderr;
  if (options.file) mkdirSync(dirname(options.file), { recursive: true });
  const threshold = levels.indexOf(options.level ?? 'info');
  const log = (level: Level, event: LogEvent, context: Record<string, unknown> = {}) => {
    if (levels.indexOf(level) < threshold) return;
    const record = { timestamp: new Date().toISOString(), level, event, ...base, ...context };
    let line: string | undefined;
    const json = () => (line ??= JSON.stringify(record, (_k, v) => (v instanceof Error ? { message: v.message, code: (v as { code?: string }).code } : v)) + '\n');
    if (options.file) appendFileSync(options.file, json());
    if (options.json) stream.write(json());
    else if (level === 'warn' || level === 'error' || options.verbose) {
      const ctx = Object.entries({ ...base, ...context })
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      stream.write(`metaguard ${level} ${event}${ctx ? ' ' + ctx : ''}\n`);
    }
  };
  return {
    log,
    info: (e, c) => log('info', e, c),
    warn: (e, c) => log('warn', e, c),
    error: (e, c) => log('error', e, c),
    child: (context) => createLogger(options, { ...base, ...context }),
  };
}

/** A logger that drops everything (programmatic use without logging options). */
export const silentLogger: Logger = createLogger({ stream: { write: () => true } as unknown as NodeJS.WritableStream });
