/**
 * Decoding what the Redis backend reads back: command replies, result stream entries and dead-letter
 * records. Nothing read from Redis is trusted (someone else may have written it): entries outside
 * their schema are reported to `malformed` and skipped.
 */
import type { Role } from '../../core/protocol.js';
import { wireError } from '../../errors.js';
import { isRecordId, MalformedRecord, parseWireError } from '../records.js';
import { isRole } from '../shared.js';
import type { Claim, DeadEntry, Priority, ResultEntry } from '../types.js';

/** A reply value as text ('' for nil). */
export function str(v: unknown): string {
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (v === null || v === undefined) return '';
  return String(v);
}

/** Rows of the claim command: {1, id, job, role, priority, payload, mac|'', attempt} or {0, id, why it is not a batch}. */
export function decodeClaims(rows: unknown[][]): Claim[] {
  return rows.map((row): Claim => {
    const id = str(row[1]);
    if (Number(row[0]) !== 1) return { ok: false, id, error: wireError('MG_ERR_MALFORMED_BATCH', str(row[2])) };
    const mac = str(row[6]);
    return {
      ok: true,
      batch: {
        id,
        jobId: str(row[2]),
        role: str(row[3]) as Role,
        priority: str(row[4]) as Priority,
        payload: row[5] as Buffer,
        ...(mac === '' ? {} : { mac }),
        attempt: Number(row[7]),
      },
    };
  });
}

/** A dead-letter record (JSON written by includes/deadLetter.lua) of batch `id`. */
export function decodeDeadEntry(id: string, json: string): DeadEntry {
  try {
    const e = JSON.parse(json) as Partial<DeadEntry> & { reason?: unknown };
    const entry: DeadEntry = { id, error: parseWireError(String(e.reason ?? '')), attempts: Number(e.attempts ?? 0), deadAt: Number(e.deadAt ?? 0) };
    if (typeof e.jobId === 'string') entry.jobId = e.jobId;
    if (isRole(e.role)) entry.role = e.role;
    return entry;
  } catch {
    // Listed, not dropped: an operator sees the id and can purge it.
    return { id, error: wireError('MG_ERR_MALFORMED_RECORD', 'unreadable dead-letter entry'), attempts: 0, deadAt: 0 };
  }
}

/** Decodes an XREAD reply `[[key, [[id, [field, value, ...]], ...]]]` (buffers) into result entries. */
export function decodeStreamReply(reply: unknown, cursor: string, malformed: (err: MalformedRecord) => void): { cursor: string; entries: ResultEntry[] } {
  const entries: ResultEntry[] = [];
  let last = cursor;
  if (!Array.isArray(reply)) return { cursor: last, entries };
  for (const stream of reply as unknown[]) {
    const items = Array.isArray(stream) ? (stream[1] as unknown[]) : [];
    for (const item of items ?? []) {
      const [rawId, rawFields] = item as [unknown, unknown[] | null];
      last = str(rawId);
      const fields = new Map<string, unknown>();
      const list = rawFields ?? [];
      for (let i = 0; i + 1 < list.length; i += 2) fields.set(str(list[i]), list[i + 1]);
      const record = `result stream entry ${last}`;
      const kind = str(fields.get('kind'));
      const batchId = str(fields.get('batch'));
      const role = str(fields.get('role'));
      const mac = fields.has('mac') ? str(fields.get('mac')) : undefined;
      if (kind !== 'results' && kind !== 'dead') {
        malformed(new MalformedRecord(record, 'kind', `must be results or dead, got ${JSON.stringify(kind.slice(0, 40))}`));
      } else if (!isRecordId(batchId)) {
        malformed(new MalformedRecord(record, 'batch', 'must be a batch id'));
      } else if (kind === 'results') {
        const frame = fields.get('frame');
        const workerId = str(fields.get('worker'));
        if (!isRole(role)) malformed(new MalformedRecord(record, 'role', `must be baseline or candidate, got ${JSON.stringify(role.slice(0, 40))}`));
        else if (!Buffer.isBuffer(frame) || frame.length === 0) malformed(new MalformedRecord(record, 'frame', 'must be a non-empty frame'));
        else if (workerId.length > 300) malformed(new MalformedRecord(record, 'worker', 'must be at most 300 characters'));
        else entries.push({ kind: 'results', batchId, role, workerId, frame, ...(mac !== undefined ? { mac } : {}) });
      } else if (role !== '' && !isRole(role)) {
        malformed(new MalformedRecord(record, 'role', `must be baseline or candidate, got ${JSON.stringify(role.slice(0, 40))}`));
      } else {
        entries.push({ kind: 'dead', batchId, error: parseWireError(str(fields.get('reason'))), ...(role !== '' ? { role: role as Role } : {}), ...(mac !== undefined ? { mac } : {}) });
      }
    }
  }
  return { cursor: last, entries };
}
