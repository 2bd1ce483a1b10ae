/**
 * Result-stream entries as brokers that carry them as message headers give them back (RabbitMQ, SQS):
 * checked field by field like every record read back (records.ts). A message someone else put on a
 * job's results queue is skipped with `malformed_record`, never handed to the coordinator.
 */
import type { Role } from '../core/protocol.js';
import { isRecordId, MalformedRecord, parseWireError } from './records.js';
import type { ResultEntry } from './types.js';

const roleSet = new Set<string>(['baseline', 'candidate']);

export interface RawResultEntry {
  kind?: string;
  batch?: string;
  role?: string;
  worker?: string;
  reason?: string;
  mac?: string;
  /** The results frame (results entries only). */
  frame?: Uint8Array;
}

const show = (s: string | undefined) => JSON.stringify((s ?? '').slice(0, 40));

/** The entry `raw` claims to be, or a MalformedRecord naming the field (`record` names the message). */
export function parseResultEntry(record: string, raw: RawResultEntry): ResultEntry {
  const { kind, batch, role = '', mac } = raw;
  if (kind !== 'results' && kind !== 'dead') throw new MalformedRecord(record, 'kind', `must be results or dead, got ${show(kind)}`);
  if (!isRecordId(batch)) throw new MalformedRecord(record, 'batch', 'must be a batch id');
  if (mac !== undefined && mac.length > 200) throw new MalformedRecord(record, 'mac', 'must be at most 200 characters');
  if (kind === 'results') {
    const worker = raw.worker ?? '';
    if (!roleSet.has(role)) throw new MalformedRecord(record, 'role', `must be baseline or candidate, got ${show(role)}`);
    if (!raw.frame || raw.frame.byteLength === 0) throw new MalformedRecord(record, 'frame', 'must be a non-empty frame');
    if (worker.length > 300) throw new MalformedRecord(record, 'worker', 'must be at most 300 characters');
    return { kind, batchId: batch, role: role as Role, workerId: worker, frame: raw.frame, ...(mac !== undefined ? { mac } : {}) };
  }
  if (role !== '' && !roleSet.has(role)) throw new MalformedRecord(record, 'role', `must be baseline or candidate, got ${show(role)}`);
  return { kind, batchId: batch, error: parseWireError(raw.reason ?? ''), ...(role !== '' ? { role: role as Role } : {}), ...(mac !== undefined ? { mac } : {}) };
}

/**
 * Batch ids a coordinator enqueued and has not yet heard back of (a results or dead entry). Brokers
 * that cannot look a message up by id (RabbitMQ, SQS) make `enqueue` idempotent with it: a retried
 * enqueue after a failure skips what the broker already confirmed, and a batch sent again after its
 * entry was read (a resend) goes out again.
 */
export class Unanswered {
  readonly #jobs = new Map<string, Set<string>>();

  has(jobId: string, id: string): boolean {
    return this.#jobs.get(jobId)?.has(id) ?? false;
  }

  add(jobId: string, id: string): void {
    let ids = this.#jobs.get(jobId);
    if (!ids) this.#jobs.set(jobId, (ids = new Set()));
    ids.add(id);
  }

  answered(jobId: string, id: string): void {
    this.#jobs.get(jobId)?.delete(id);
  }

  /** Forgets a job; returns the ids it still had outstanding. */
  dropJob(jobId: string): string[] {
    const ids = [...(this.#jobs.get(jobId) ?? [])];
    this.#jobs.delete(jobId);
    return ids;
  }
}
