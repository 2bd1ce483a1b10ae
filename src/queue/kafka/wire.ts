/**
 * What the Kafka backend writes to and reads back from its topics: header helpers and the schemas of
 * batch, result and dead-letter records. Anything read back may have been written by someone else:
 * every record is checked here (ids, roles, bounded integers) before the backend uses it. A batch
 * record that fails becomes a claim to dead-letter (`ok: false`); a result or dead-letter record that
 * fails throws a `MalformedRecord` (MG_ERR_MALFORMED_RECORD), which the topic reader logs as
 * `malformed_record` and skips.
 */
import type { IHeaders, KafkaMessage } from 'kafkajs';
import type { Role } from '../../core/protocol.js';
import { wireError, type WireError } from '../../errors.js';
import { intIn, isRecordId, MalformedRecord, parseWireError } from '../records.js';
import { priorities, type ClaimedBatch, type DeadEntry, type Priority, type ResultEntry } from '../types.js';

export const roleSet: ReadonlySet<string> = new Set<string>(['baseline', 'candidate']);

/** Most deliveries a record can claim to have had (a forged `attempt` beyond it is not a batch). */
export const MAX_ATTEMPT_HEADER = 1_000_000;
const MAX_TIME_MS = 8.64e15;

export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function header(headers: IHeaders | undefined, name: string): string | undefined {
  const v = headers?.[name];
  if (v === undefined || v === null) return undefined;
  const one = Array.isArray(v) ? v[v.length - 1] : v;
  if (one === undefined) return undefined;
  return Buffer.isBuffer(one) ? one.toString('utf8') : String(one);
}

export function copyHeaders(headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(headers ?? {})) {
    const v = header(headers, key);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function prioOf(p: string | undefined): Priority {
  return p !== undefined && (priorities as readonly string[]).includes(p) ? (p as Priority) : 'normal';
}

/** `p`, or `fallback` once `ms` passed (the timer is cleared either way). */
export function withTimeout<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]).finally(() => clearTimeout(timer));
}

/** Where a record is, for messages: `topic/partition@offset`. */
export function recordName(topic: string, partition: number, offset: string | bigint): string {
  return `${topic}/${partition}@${offset}`;
}

/** A header that must be a decimal integer in [min, max]; absent: `fallback`. */
function intHeader(record: string, field: string, raw: string | undefined, min: number, max: number, fallback: number): number {
  if (raw === undefined) return fallback;
  if (!/^-?\d{1,16}$/.test(raw)) throw new MalformedRecord(record, field, `must be an integer in ${min}..${max}, got ${JSON.stringify(raw.slice(0, 40))}`);
  return intIn(record, field, Number(raw), min, max);
}

// --- batch records (topic T) ------------------------------------------------------------------------

export type ParsedBatch =
  | { ok: true; batch: Omit<ClaimedBatch, 'attempt'>; attempts: number; notBefore: number }
  | { ok: false; id: string; error: WireError; jobId?: string; role?: Role; attempts: number };

/** The id a poison record without a usable id is claimed and dead-lettered under. */
const SYNTHETIC_ID = /^[A-Za-z0-9._-]{1,249}\/\d{1,10}@\d{1,20}$/;

/**
 * Reads a batch record; anything that is not a well-formed batch is a claim to dead-letter, under a
 * synthetic id (`topic/partition@offset`) when its own id is missing or not an id. A retry is never
 * scheduled further out than `maxDelayMs` (retry backoff's cap): a later `not_before` is forged (it
 * would park the record in a worker's buffer for ever) and ignored.
 */
export function parseBatchRecord(topic: string, partition: number, m: KafkaMessage, maxDelayMs: number, now = Date.now()): ParsedBatch {
  const h = m.headers;
  const where = recordName(topic, partition, m.offset);
  const record = `batch record ${where}`;
  const rawId = header(h, 'id') ?? (m.key ? m.key.toString('utf8') : undefined);
  let attempts = 0;
  let attemptError: string | undefined;
  try {
    attempts = intHeader(record, 'attempt', header(h, 'attempt'), 0, MAX_ATTEMPT_HEADER, 0);
  } catch (err) {
    if (!(err instanceof MalformedRecord)) throw err;
    attemptError = err.message;
  }
  if (!rawId) return { ok: false, id: where, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: no id header'), attempts };
  if (!isRecordId(rawId)) return { ok: false, id: where, error: wireError('MG_ERR_MALFORMED_BATCH', `malformed batch: id ${JSON.stringify(String(rawId).slice(0, 40))} is not a batch id`), attempts };
  const id = rawId;
  const jobId = header(h, 'job');
  const role = header(h, 'role');
  const info = { ...(jobId && isRecordId(jobId) ? { jobId } : {}), ...(role && roleSet.has(role) ? { role: role as Role } : {}) };
  if (attemptError) return { ok: false, id, error: wireError('MG_ERR_MALFORMED_BATCH', `malformed batch: ${attemptError}`), attempts, ...info };
  if (!m.value || m.value.length === 0) return { ok: false, id, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: no payload'), attempts, ...info };
  if (!jobId) return { ok: false, id, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: no job'), attempts, ...info };
  if (!isRecordId(jobId)) return { ok: false, id, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: job is not a job id'), attempts, ...info };
  if (!role || !roleSet.has(role)) return { ok: false, id, error: wireError('MG_ERR_MALFORMED_BATCH', 'malformed batch: bad role'), attempts, ...info };
  const mac = header(h, 'mac');
  let notBefore = 0;
  try {
    notBefore = intHeader(record, 'not_before', header(h, 'not_before'), 0, MAX_TIME_MS, 0);
  } catch (err) {
    if (!(err instanceof MalformedRecord)) throw err;
    return { ok: false, id, error: wireError('MG_ERR_MALFORMED_BATCH', `malformed batch: ${err.message}`), attempts, ...info };
  }
  return {
    ok: true,
    batch: { id, jobId, role: role as Role, priority: prioOf(header(h, 'priority')), payload: m.value, ...(mac ? { mac } : {}) },
    attempts,
    notBefore: notBefore > now + maxDelayMs ? 0 : notBefore,
  };
}

// --- result records (topic T.results) ---------------------------------------------------------------

/** Where a worker re-produced a batch (a counted retry): the coordinator follows it for missingBatches. */
export interface MovedRecord {
  kind: 'moved';
  batchId: string;
  partition: number;
  offset: bigint;
}

/**
 * A record of T.results: a results or dead entry of job `jobId` (its key), or a `moved` marker.
 * Throws MalformedRecord for anything else.
 */
export function parseResultRecord(topic: string, partition: number, m: KafkaMessage): { jobId: string; entry: ResultEntry | MovedRecord } {
  const record = `result record ${recordName(topic, partition, m.offset)}`;
  const jobId = m.key?.toString('utf8') ?? '';
  if (!isRecordId(jobId)) throw new MalformedRecord(record, 'key', 'must be a job id');
  const kind = header(m.headers, 'kind');
  const batchId = header(m.headers, 'batch') ?? '';
  const role = header(m.headers, 'role') ?? '';
  const mac = header(m.headers, 'mac');
  if (!isRecordId(batchId)) throw new MalformedRecord(record, 'batch', 'must be a batch id');
  const badRole = () => new MalformedRecord(record, 'role', `must be baseline or candidate, got ${JSON.stringify(role.slice(0, 40))}`);
  if (kind === 'results') {
    if (!roleSet.has(role)) throw badRole();
    if (!m.value || m.value.length === 0) throw new MalformedRecord(record, 'value', 'must be a non-empty frame');
    return { jobId, entry: { kind: 'results', batchId, role: role as Role, workerId: (header(m.headers, 'worker') ?? '').slice(0, 300), frame: Buffer.from(m.value), ...(mac !== undefined ? { mac } : {}) } };
  }
  if (kind === 'dead') {
    if (role !== '' && !roleSet.has(role)) throw badRole();
    return { jobId, entry: { kind: 'dead', batchId, error: parseWireError(header(m.headers, 'reason') ?? ''), ...(role !== '' ? { role: role as Role } : {}), ...(mac !== undefined ? { mac } : {}) } };
  }
  if (kind === 'moved') {
    const p = intHeader(record, 'partition', header(m.headers, 'partition') ?? '', 0, 1_000_000, 0);
    const rawOffset = header(m.headers, 'offset') ?? '';
    if (!/^\d{1,19}$/.test(rawOffset)) throw new MalformedRecord(record, 'offset', 'must be a record offset');
    return { jobId, entry: { kind: 'moved', batchId, partition: p, offset: BigInt(rawOffset) } };
  }
  throw new MalformedRecord(record, 'kind', `must be results, dead or moved, got ${JSON.stringify(String(kind).slice(0, 40))}`);
}

// --- dead letters (topic T.dlq) ---------------------------------------------------------------------

export interface DeadRecord extends DeadEntry {
  partition: number;
  offset: bigint;
  value: Buffer | null;
  headers: Record<string, string>;
}

export type DlqRecord =
  | { kind: 'purge' }
  | { kind: 'retried'; id: string }
  | { kind: 'dead'; dead: DeadRecord; dropped: MalformedRecord[] };

/**
 * A record of T.dlq. A dead letter needs an id and bounded `attempts`/`dead_at`; a `job` or `role`
 * header that fails its check is left out (the entry is listed, but `dlq retry` does not re-produce
 * it) and reported in `dropped`. Throws MalformedRecord for a record that is none of these.
 */
export function parseDlqRecord(topic: string, partition: number, m: KafkaMessage): DlqRecord {
  const record = `dead-letter record ${recordName(topic, partition, m.offset)}`;
  const kind = header(m.headers, 'kind') ?? 'dead';
  if (kind === 'purge') return { kind };
  const id = header(m.headers, 'id') ?? m.key?.toString('utf8') ?? '';
  if (!isRecordId(id) && !SYNTHETIC_ID.test(id)) throw new MalformedRecord(record, 'id', `must be a batch id, got ${JSON.stringify(String(id).slice(0, 40))}`);
  if (kind === 'retried') return { kind, id };
  if (kind !== 'dead') throw new MalformedRecord(record, 'kind', `must be dead, retried or purge, got ${JSON.stringify(kind.slice(0, 40))}`);
  const headers = copyHeaders(m.headers);
  const dropped: MalformedRecord[] = [];
  const dead: DeadRecord = {
    id,
    error: parseWireError(headers.reason ?? ''),
    attempts: intHeader(record, 'attempts', headers.attempts, 0, MAX_ATTEMPT_HEADER + 1, 0),
    deadAt: intHeader(record, 'dead_at', headers.dead_at, 0, MAX_TIME_MS, Number(m.timestamp)),
    partition,
    offset: BigInt(m.offset),
    value: m.value ? Buffer.from(m.value) : null,
    headers,
  };
  if (headers.job !== undefined) {
    if (isRecordId(headers.job)) dead.jobId = headers.job;
    else dropped.push(new MalformedRecord(record, 'job', 'must be a job id (left out)'));
  }
  if (headers.role !== undefined) {
    if (roleSet.has(headers.role)) dead.role = headers.role as Role;
    else dropped.push(new MalformedRecord(record, 'role', 'must be baseline or candidate (left out)'));
  }
  return { kind, dead, dropped };
}
