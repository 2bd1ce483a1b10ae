/**
 * Helpers every backend needs the same way: byte views, error text, the enumerations a batch is
 * checked against, and the validation of batches handed to `enqueue`.
 */
import { MetaguardError } from '../errors.js';
import type { Role } from '../core/protocol.js';
import { priorities, type BatchMessage, type Priority } from './types.js';

const roles: ReadonlySet<string> = new Set<Role>(['baseline', 'candidate']);

/** True for `baseline` and `candidate`. */
export function isRole(v: unknown): v is Role {
  return typeof v === 'string' && roles.has(v);
}

/** True for one of the four priorities. */
export function isPriority(v: unknown): v is Priority {
  return typeof v === 'string' && (priorities as readonly string[]).includes(v);
}

/** A stored priority, or `normal` when it is missing or not one of the four. */
export function priorityOf(p: string | undefined): Priority {
  return isPriority(p) ? p : 'normal';
}

/** A Buffer over the same bytes (no copy). */
export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The message of an error (or the value as text), for one-line error messages. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** `p`, or `fallback` when `p` has not settled within `ms` (the timer is cleared either way). */
export function withTimeout<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]).finally(() => clearTimeout(timer));
}

/**
 * Checks the batches a coordinator hands to `enqueue` before anything is written: each needs an id,
 * a known priority and a known role. Throws MG_ERR_MALFORMED_BATCH (not retryable: the coordinator
 * stops instead of retrying it as a backend outage) naming the batch and the field.
 */
export function validateBatches(batches: readonly BatchMessage[]): void {
  for (const b of batches) {
    if (typeof b.id !== 'string' || b.id === '') throw new MetaguardError('MG_ERR_MALFORMED_BATCH', 'cannot enqueue a batch without an id');
    if (!isPriority(b.priority)) throw new MetaguardError('MG_ERR_MALFORMED_BATCH', `batch ${b.id}: unknown priority ${String(b.priority)}`);
    if (!isRole(b.role)) throw new MetaguardError('MG_ERR_MALFORMED_BATCH', `batch ${b.id}: unknown role ${String(b.role)}`);
  }
}
