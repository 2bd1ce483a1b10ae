/**
 * What a RabbitMQ message of metaguard's carries, read back: batch headers, result entries, dead
 * letters. Headers are strings someone else may have written: each is checked here (records.ts) and a
 * message that fails is never trusted.
 */
import type { GetMessage, Message } from 'amqplib';
import type { Role } from '../../core/protocol.js';
import { parseResultEntry } from '../read-back.js';
import { wireError, type WireError } from '../../errors.js';
import { isRecordId, MalformedRecord, parseWireError } from '../records.js';
import { priorities, type ClaimedBatch, type DeadEntry, type Priority, type ResultEntry } from '../types.js';

export const roleSet = new Set<string>(['baseline', 'candidate']);

/** Retry-delay steps: 100 ms × 2^k, k = 0..15 (100 ms … ~55 min), one delay queue each. */
export const DELAY_STEPS_MS: readonly number[] = Array.from({ length: 16 }, (_, k) => 100 * 2 ** k);

/** Most deliveries a batch header may claim (anything above was not written by metaguard). */
const MAX_ATTEMPT = 1_000_000;

export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function hstr(headers: Record<string, unknown> | undefined, name: string): string | undefined {
  const v = headers?.[name];
  if (v === undefined || v === null) return undefined;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

export function hint(headers: Record<string, unknown> | undefined, name: string, fallback = 0): number {
  const n = Number(hstr(headers, name));
  return Number.isFinite(n) ? Math.trunc(n) : fallback;
}

export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function prioOf(p: string | undefined): Priority {
  return p !== undefined && (priorities as readonly string[]).includes(p) ? (p as Priority) : 'normal';
}

/**
 * The delay step a retry of `ms` waits: the first step longer than it (so never shorter, at most twice
 * as long: TTL expiry is not exact to the millisecond), or the longest.
 */
export function delayStep(ms: number): number {
  for (const s of DELAY_STEPS_MS) if (s > ms) return s;
  return DELAY_STEPS_MS[DELAY_STEPS_MS.length - 1];
}

/** Hides the password of an amqp(s):// URL. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

export type Parsed =
  | { ok: true; batch: Omit<ClaimedBatch, 'attempt'>; prior: number }
  | { ok: false; error: WireError; jobId?: string; role?: Role; prior: number };

/** The batch id a delivery names (its `id` header or message id), if it is one. */
export function batchIdOf(msg: GetMessage): string | undefined {
  const h = hstr(msg.properties.headers, 'id') ?? (typeof msg.properties.messageId === 'string' ? msg.properties.messageId : undefined);
  return isRecordId(h) ? h : undefined;
}

/** A delivery from a batch queue, checked: a batch, or why it is not one (to dead-letter). */
export function parseBatch(msg: GetMessage, id: string): Parsed {
  const h = msg.properties.headers;
  const rawAttempt = hstr(h, 'attempt') ?? '0';
  const attempt = Number(rawAttempt);
  const countable = /^\d{1,7}$/.test(rawAttempt) && attempt <= MAX_ATTEMPT;
  const prior = countable ? attempt : 0;
  const jobId = hstr(h, 'job');
  const role = hstr(h, 'role');
  const info = { ...(isRecordId(jobId) ? { jobId } : {}), ...(role && roleSet.has(role) ? { role: role as Role } : {}) };
  if (msg.content.length === 0) return { ok: false, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: no payload'), prior, ...info };
  if (!jobId) return { ok: false, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: no job'), prior, ...info };
  if (!isRecordId(jobId)) return { ok: false, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: job is not an id'), prior, ...info };
  if (!role || !roleSet.has(role)) return { ok: false, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: bad role'), prior, ...info };
  if (!countable) return { ok: false, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: attempts is not a count'), prior, ...info };
  const mac = hstr(h, 'mac');
  return { ok: true, batch: { id, jobId, role: role as Role, priority: prioOf(hstr(h, 'priority')), payload: msg.content, ...(mac ? { mac } : {}) }, prior };
}

/** An entry of a job's results queue, checked (MalformedRecord when it is not one of metaguard's). */
export function parseResultMessage(jobId: string, msg: Message): ResultEntry {
  const h = msg.properties.headers;
  const kind = hstr(h, 'kind');
  const mac = hstr(h, 'mac');
  const reason = hstr(h, 'reason');
  return parseResultEntry(`results queue entry of job ${jobId}`, {
    ...(kind !== undefined ? { kind } : {}),
    ...(hstr(h, 'batch') !== undefined ? { batch: hstr(h, 'batch')! } : {}),
    role: hstr(h, 'role') ?? '',
    worker: hstr(h, 'worker') ?? '',
    ...(reason !== undefined ? { reason } : {}),
    ...(mac !== undefined ? { mac } : {}),
    ...(kind === 'results' ? { frame: Buffer.from(msg.content) } : {}),
  });
}

/** A dead letter as `queue dlq list` shows it. Throws MalformedRecord for one without a batch id. */
export function deadEntryOf(m: GetMessage): DeadEntry {
  const h = m.properties.headers as Record<string, unknown> | undefined;
  const id = hstr(h, 'id') ?? (typeof m.properties.messageId === 'string' ? m.properties.messageId : undefined);
  if (!isRecordId(id)) throw new MalformedRecord('dead letter', 'id', 'must be a batch id');
  const e: DeadEntry = {
    id,
    error:
      hstr(h, 'reason') !== undefined
        ? parseWireError(hstr(h, 'reason')!)
        : Array.isArray(h?.['x-death'])
          ? wireError('MG_ERR_LEASE_EXPIRED', `dead-lettered by the broker (${hstr((h!['x-death'] as Record<string, unknown>[])[0], 'reason') ?? 'unknown'})`)
          : parseWireError(''),
    attempts: Math.min(MAX_ATTEMPT, Math.max(0, hint(h, 'attempts'))),
    deadAt: Math.max(0, Math.min(8.64e15, hint(h, 'dead_at', Number(m.properties.timestamp) || 0))),
  };
  const job = hstr(h, 'job');
  const role = hstr(h, 'role');
  if (isRecordId(job)) e.jobId = job;
  if (role && roleSet.has(role)) e.role = role as Role;
  return e;
}
