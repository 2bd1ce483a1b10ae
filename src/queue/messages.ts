/**
 * What travels inside batch frames, and batch signing. Each case and each result is one payload of the
 * frame. Cases (arbitrary user values) use codec/serialize: msgpackr with structured-clone types,
 * the fastest of the formats that keep undefined, NaN, Map, typed arrays (bench/serialize.ts).
 * Results are metaguard's own JSON-safe shapes, for which JSON measured faster than msgpackr.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { MetaguardError } from '../errors.js';
import type { Codec } from '../codec/types.js';
import { pack, unpack } from '../codec/serialize.js';
import type { CaseInput, CaseResult } from '../execution/protocol.js';
import type { BatchMessage } from './types.js';
import { MAX_FRAME_BODY } from '../codec/frame.js';
import { truncate } from '../execution/limits.js';

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (err) {
    throw new MetaguardError('MG_ERR_CODEC', `${what}: not valid JSON (${(err as Error).message})`);
  }
}

function decodeEach<T>(codec: Codec, frame: Uint8Array, check: (v: unknown) => v is T, what: string, parse: (b: Uint8Array, what: string) => unknown): T[] {
  const payloads = codec.decode(frame);
  return payloads.map((p, i) => {
    const value = parse(p, `${what} ${i}`);
    if (!check(value)) throw new MetaguardError('MG_ERR_CODEC', `${what} ${i}: not a well-formed ${what}`);
    return value;
  });
}

const isCase = (v: unknown): v is CaseInput =>
  v !== null && typeof v === 'object' && Number.isInteger((v as CaseInput).index) && (v as CaseInput).index >= 0 && Array.isArray((v as CaseInput).args);

const isResult = (v: unknown): v is CaseResult =>
  v !== null && typeof v === 'object' && Number.isInteger((v as CaseResult).index) && typeof (v as CaseResult).passed === 'boolean' && typeof (v as CaseResult).durationMs === 'number';

export const encodeCases = (codec: Codec, cases: CaseInput[]): Uint8Array => codec.encode(cases.map(pack));
export const decodeCases = (codec: Codec, frame: Uint8Array): CaseInput[] => decodeEach(codec, frame, isCase, 'case', unpack);
export const encodeResults = (codec: Codec, results: CaseResult[]): Uint8Array => codec.encode(results.map((r) => Buffer.from(JSON.stringify(r))));
/** Raw bytes a results frame may carry before results are compacted (a quarter of the codec's limit). */
export const RESULTS_FRAME_BUDGET = MAX_FRAME_BODY / 4;

function compact(r: CaseResult): CaseResult {
  const out: CaseResult = { index: r.index, passed: r.passed, durationMs: r.durationMs };
  if (r.error) out.error = { code: r.error.code, message: truncate(r.error.message, 100) };
  const names = (list: string[] | undefined) => list && list.slice(0, 4).map((n) => truncate(n, 40)).concat(list.length > 4 ? [`…[${list.length - 4} more]`] : []);
  if (r.propViolations) out.propViolations = names(r.propViolations);
  if (r.softViolations) out.softViolations = names(r.softViolations);
  if (r.mrViolations) out.mrViolations = names(r.mrViolations);
  return out;
}

/**
 * Encodes results so the frame fits: results arrive bounded (execution/limits.ts), and a batch whose
 * results together would exceed RESULTS_FRAME_BUDGET is sent with every result compacted (previews
 * dropped, messages and names cut further) instead of failing to encode.
 */
export function encodeResultsWithin(codec: Codec, results: CaseResult[], budget = RESULTS_FRAME_BUDGET): Uint8Array {
  let payloads = results.map((r) => Buffer.from(JSON.stringify(r)));
  let total = payloads.reduce((n, p) => n + p.byteLength, 0);
  if (total > budget) {
    payloads = results.map((r) => Buffer.from(JSON.stringify(compact(r))));
    total = payloads.reduce((n, p) => n + p.byteLength, 0);
    if (total > budget) throw new MetaguardError('MG_ERR_CODEC', `results of ${results.length} cases need ${total} bytes even compacted (budget ${budget})`);
  }
  return codec.encode(payloads);
}
export const decodeResults = (codec: Codec, frame: Uint8Array): CaseResult[] => decodeEach(codec, frame, isResult, 'result', parseJson);

function mac(key: string, batch: Pick<BatchMessage, 'id' | 'jobId' | 'role' | 'payload'>): Buffer {
  return createHmac('sha256', key).update(`${batch.id}\n${batch.jobId}\n${batch.role}\n`).update(batch.payload).digest();
}

export function signBatch(key: string, batch: Pick<BatchMessage, 'id' | 'jobId' | 'role' | 'payload'>): string {
  return mac(key, batch).toString('hex');
}

/** Throws MG_ERR_HMAC when the batch is unsigned or its signature does not match. */
export function verifyBatch(key: string, batch: BatchMessage): void {
  if (!batch.mac || !/^[0-9a-f]{64}$/.test(batch.mac)) throw new MetaguardError('MG_ERR_HMAC', 'batch is not signed (hmac_key is set)');
  if (!timingSafeEqual(Buffer.from(batch.mac, 'hex'), mac(key, batch))) throw new MetaguardError('MG_ERR_HMAC', 'batch signature does not match (tampered or wrong hmac_key)');
}
