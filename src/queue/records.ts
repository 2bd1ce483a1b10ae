/**
 * Schemas of what metaguard reads back from a backend. A backend is shared storage that someone else
 * may have written: every record is checked here with the same discipline as user input (types,
 * bounds, enumerations) before anything uses it. A record that fails is never trusted: callers skip it
 * and log `malformed_record` with the code MG_ERR_MALFORMED_RECORD, the record's key, the field and
 * the reason.
 */
import { isRetryableCode, MetaguardError, type WireError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import type { ArtifactRef, JobManifest, WorkerInfo } from './types.js';

export class MalformedRecord extends MetaguardError {
  constructor(
    readonly record: string,
    readonly recordField: string,
    readonly reason: string,
  ) {
    super('MG_ERR_MALFORMED_RECORD', `${record}: ${recordField} ${reason}`, { field: recordField });
  }
}

/** Logs a skipped record (one line: code, record, field, reason). */
export function logMalformed(logger: Logger | undefined, err: MalformedRecord, context: Record<string, unknown> = {}): void {
  logger?.warn('malformed_record', { code: err.code, record: err.record, field: err.recordField, reason: err.reason, ...context });
}

const ID = /^[A-Za-z0-9_.:-]{1,200}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const EXT = /^\.[A-Za-z0-9]{1,8}$/;

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + '...' : s;
}

/** An integer in [min, max]; `record`/`field` name it in the error. */
export function intIn(record: string, field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new MalformedRecord(record, field, `must be an integer in ${min}..${max}, got ${show(v)}`);
  return v;
}

function numberIn(record: string, field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new MalformedRecord(record, field, `must be a number in ${min}..${max}, got ${show(v)}`);
  return v;
}

function stringOf(record: string, field: string, v: unknown, pattern?: RegExp, max = 1000): string {
  if (typeof v !== 'string' || v.length > max || (pattern && !pattern.test(v))) throw new MalformedRecord(record, field, `must be ${pattern ? `a string matching ${pattern}` : `a string of at most ${max} characters`}, got ${show(v)}`);
  return v;
}

function objectOf(record: string, field: string, v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new MalformedRecord(record, field, `must be an object, got ${show(v)}`);
  return v as Record<string, unknown>;
}

/** A batch or job id as metaguard writes them (UUIDs, `<job>:<role>:<start>`). */
export function isRecordId(v: unknown): v is string {
  return typeof v === 'string' && ID.test(v);
}

function artifactRef(record: string, field: string, v: unknown): ArtifactRef {
  const o = objectOf(record, field, v);
  return { sha256: stringOf(record, `${field}.sha256`, o.sha256, SHA256), ext: stringOf(record, `${field}.ext`, o.ext, EXT), name: stringOf(record, `${field}.name`, o.name, undefined, 255) };
}

/**
 * Limits as `evaluate` validates them (--timeout-s ≤ 86400 s, --mem-mb 16..65536, --seed 0..2^32-1):
 * a manifest outside them was not written by a coordinator.
 */
export function parseManifest(jobId: string, raw: string): JobManifest {
  const record = `job manifest ${jobId}`;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new MalformedRecord(record, 'json', 'is not valid JSON');
  }
  const o = objectOf(record, 'manifest', v);
  if (o.jobId !== jobId) throw new MalformedRecord(record, 'jobId', `must be ${show(jobId)} (the key it is stored under), got ${show(o.jobId)}`);
  const impls = objectOf(record, 'implementations', o.implementations);
  const m: JobManifest = {
    jobId,
    task: artifactRef(record, 'task', o.task),
    implementations: { baseline: artifactRef(record, 'implementations.baseline', impls.baseline), candidate: artifactRef(record, 'implementations.candidate', impls.candidate) },
    seed: intIn(record, 'seed', o.seed, 0, 2 ** 32 - 1),
    timeoutMs: intIn(record, 'timeoutMs', o.timeoutMs, 1, 86_400_000),
    memMb: intIn(record, 'memMb', o.memMb, 16, 65_536),
    createdAt: numberIn(record, 'createdAt', o.createdAt, 0, 8.64e15),
  };
  // exec is checked field by field where it is used (http/endpoint parseJobExec, MG_ERR_HTTP_CONFIG).
  if (o.exec !== undefined) m.exec = objectOf(record, 'exec', o.exec) as unknown as NonNullable<JobManifest['exec']>;
  if (o.mac !== undefined) m.mac = stringOf(record, 'mac', o.mac, /^[0-9a-f]{64}$/);
  // Any other value is a format this worker does not know: it sends one JSON result per payload.
  if (o.resultsFormat === 2) m.resultsFormat = 2;
  return m;
}

/** A heartbeat record; `threads` bounds what a coordinator sizes its pipeline by. */
export function parseWorkerInfo(workerId: string, lastHeartbeat: number, raw: string, onDropped?: (err: MalformedRecord) => void): WorkerInfo {
  const record = `worker ${workerId}`;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new MalformedRecord(record, 'json', 'is not valid JSON');
  }
  const o = objectOf(record, 'info', v);
  const info: WorkerInfo = {
    workerId,
    host: stringOf(record, 'host', o.host ?? '', undefined, 255),
    pid: intIn(record, 'pid', o.pid ?? 0, 0, 2 ** 31),
    threads: intIn(record, 'threads', o.threads, 1, 1024),
    startedAt: numberIn(record, 'startedAt', o.startedAt ?? 0, 0, 8.64e15),
    lastHeartbeat,
  };
  if (o.casesCompleted !== undefined) info.casesCompleted = intIn(record, 'casesCompleted', o.casesCompleted, 0, Number.MAX_SAFE_INTEGER);
  if (o.state !== undefined) {
    if (o.state !== 'running' && o.state !== 'draining') throw new MalformedRecord(record, 'state', `must be running or draining, got ${show(o.state)}`);
    info.state = o.state;
  }
  // Display-only fields (dashboard, queue stats): one that fails its check is left out, the record kept.
  const optional = (fn: () => void) => {
    try {
      fn();
    } catch (err) {
      if (!(err instanceof MalformedRecord)) throw err;
      onDropped?.(err);
    }
  };
  optional(() => {
    if (o.version !== undefined) info.version = stringOf(record, 'version', o.version, undefined, 100);
  });
  optional(() => {
    if (o.node !== undefined) info.node = stringOf(record, 'node', o.node, undefined, 100);
  });
  optional(() => {
    if (o.codec === undefined) return;
    if (o.codec !== 'native' && o.codec !== 'js') throw new MalformedRecord(record, 'codec', `must be native or js, got ${show(o.codec)}`);
    info.codec = o.codec;
  });
  optional(() => {
    if (o.casesPerSec !== undefined) info.casesPerSec = numberIn(record, 'casesPerSec', o.casesPerSec, 0, 1e9);
  });
  optional(() => {
    if (o.threadLoad === undefined) return;
    if (!Array.isArray(o.threadLoad) || o.threadLoad.length > 1024) throw new MalformedRecord(record, 'threadLoad', 'must be a list of at most 1024 entries');
    info.threadLoad = o.threadLoad.map((t, i) => {
      const e = objectOf(record, `threadLoad[${i}]`, t);
      return { busy: numberIn(record, `threadLoad[${i}].busy`, e.busy ?? 0, 0, 1e3), heapBytes: numberIn(record, `threadLoad[${i}].heapBytes`, e.heapBytes ?? 0, 0, 2 ** 53) };
    });
  });
  return info;
}

/** Longest message a wire error keeps (a dead letter's reason is shown to operators, not stored whole). */
export const WIRE_MESSAGE_MAX = 2000;
const CODE = /^(E|MG_ERR)_[A-Z_]{1,40}$/;

/**
 * A wire error as backends store it in a dead letter's or a claim's `reason` slot: one JSON object
 * `{"code","message","retryable"}`, so the slot every backend already has carries data, not prose.
 */
export function encodeWireError(e: WireError): string {
  return JSON.stringify({ code: e.code, message: e.message.slice(0, WIRE_MESSAGE_MAX), retryable: e.retryable });
}

/**
 * Reads a `reason` slot back. A slot holding a well-formed wire error gives it; anything else (a dead
 * letter written before errors were coded, or text someone else wrote) is kept as the message of an
 * MG_ERR_UNCODED error that is not retryable: shown to the operator, never matched on.
 */
export function parseWireError(raw: string): WireError {
  if (raw.startsWith('{') && raw.length <= 4 * WIRE_MESSAGE_MAX) {
    try {
      const v = JSON.parse(raw) as Record<string, unknown>;
      if (v !== null && typeof v === 'object' && typeof v.code === 'string' && CODE.test(v.code) && typeof v.message === 'string' && (v.retryable === undefined || typeof v.retryable === 'boolean')) {
        return { code: v.code, message: v.message.slice(0, WIRE_MESSAGE_MAX), retryable: typeof v.retryable === 'boolean' ? v.retryable : isRetryableCode(v.code) };
      }
    } catch {
      // Not JSON: free text, read below.
    }
  }
  return { code: 'MG_ERR_UNCODED', message: raw.slice(0, WIRE_MESSAGE_MAX), retryable: false };
}

/** What a reader of the stored slot gets back: signers sign this form, so signature and reader agree. */
export function storedWireError(e: WireError): { reason: string; error: WireError } {
  const reason = encodeWireError(e);
  return { reason, error: parseWireError(reason) };
}

/** The same wire error with more said (e.g. "gave up after 3 attempts"), its code kept. */
export function withDetail(e: WireError, detail: string): WireError {
  return { ...e, message: `${e.message} ${detail}` };
}
