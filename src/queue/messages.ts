/**
 * What travels inside batch frames, and batch signing. Each case and each result is one payload of the
 * frame. Cases (arbitrary user values) use codec/serialize: msgpackr with structured-clone types,
 * the fastest of the formats that keep undefined, NaN, Map, typed arrays (bench/serialize.ts).
 * Results are metaguard's own JSON-safe shapes, for which JSON measured faster than msgpackr.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { MetaguardError, type WireError } from '../errors.js';
import type { Codec } from '../codec/types.js';
import { pack, quickCaseIndex, unpack, unpackCase } from '../codec/serialize.js';
import type { BatchMessage, JobManifest } from './types.js';
import { FRAME_HEADER_BYTES, MAX_FRAME_BODY } from '../codec/frame.js';
import type { BackendName, QueueConfig } from '../options/queue.js';
import { truncate } from '../execution/limits.js';
import { NO_ARGS, type CaseInput, type CaseResult } from '../core/protocol.js';

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

const isNames = (v: unknown) => v === undefined || (Array.isArray(v) && v.length <= 10_000 && v.every((x) => typeof x === 'string'));

/** A result as a worker writes it: read back from a shared backend, so every field is checked. */
const isResult = (v: unknown): v is CaseResult => {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const r = v as CaseResult;
  if (!Number.isInteger(r.index) || r.index < 0 || typeof r.passed !== 'boolean') return false;
  if (typeof r.durationMs !== 'number' || !Number.isFinite(r.durationMs) || r.durationMs < 0 || r.durationMs > 1e9) return false;
  if (r.error !== undefined && (r.error === null || typeof r.error !== 'object' || typeof r.error.code !== 'string' || !/^(E|MG_ERR)_[A-Z_]{1,40}$/.test(r.error.code) || typeof r.error.message !== 'string' || (r.error.retryable !== undefined && typeof r.error.retryable !== 'boolean'))) return false;
  if (r.output !== undefined && typeof r.output !== 'string') return false;
  return isNames(r.propViolations) && isNames(r.softViolations) && isNames(r.mrViolations);
};

export const encodeCases = (codec: Codec, cases: CaseInput[]): Uint8Array => codec.encode(cases.map(pack));
export const decodeCases = (codec: Codec, frame: Uint8Array): CaseInput[] => decodeEach(codec, frame, isCase, 'case', unpackCase);
/**
 * `decodeCases` that also gives each case's serialized bytes (views into the decoded frame): a worker
 * hands those to its case threads, which deserialize them again, instead of cloning the values.
 * With `args: false` (case threads, which read only the payloads) a case in the usual layout is
 * checked and its index read without building its arguments, which are then left empty; any other
 * payload is decoded and checked in full, as with `args: true`.
 */
export function decodeCasesWithPayloads(codec: Codec, frame: Uint8Array, options: { args: boolean } = { args: true }): { cases: CaseInput[]; payloads: Uint8Array[] } {
  const payloads = codec.decode(frame);
  const cases = payloads.map((p, i): CaseInput => {
    const index = options.args ? undefined : quickCaseIndex(p, `case ${i}`);
    if (index !== undefined) return { index, args: NO_ARGS };
    const value = unpackCase(p, `case ${i}`);
    if (!isCase(value)) throw new MetaguardError('MG_ERR_CODEC', `case ${i}: not a well-formed case`);
    return value;
  });
  return { cases, payloads };
}
export const encodeResults = (codec: Codec, results: CaseResult[]): Uint8Array => codec.encode(results.map((r) => Buffer.from(JSON.stringify(r))));

/**
 * Largest results frame a worker publishes, per backend: the transport's message limit less headroom
 * for the headers or attributes that travel with the frame. Redis takes 512 MB bulk strings (kept far
 * lower: the coordinator reads many entries per call); Kafka brokers and librdkafka default to 1 MB
 * messages (`message.max.bytes`); RabbitMQ 4.x to 16 MiB (`max_message_size`, 128 MiB before 4.0);
 * SQS to 256 KiB, attributes included. `max_frame_bytes` in the queue config overrides it.
 */
export const DEFAULT_MAX_FRAME_BYTES: Readonly<Record<BackendName, number>> = {
  memory: MAX_FRAME_BODY / 4,
  redis: 32 * 1024 * 1024,
  kafka: 900 * 1024,
  rabbitmq: 8 * 1024 * 1024,
  sqs: 240 * 1024,
};

export const maxFrameBytes = (config: Pick<QueueConfig, 'backend' | 'max_frame_bytes'>): number => config.max_frame_bytes ?? DEFAULT_MAX_FRAME_BYTES[config.backend];

/** Which part of a batch's results a frame carries (its first payload, when the results were split). */
export interface ResultsPart {
  part: number;
  parts: number;
}

/** Room kept in each part for its part header payload. */
const PART_HEADER_ROOM = 4 + 64;
/** Most parts one batch's results may arrive in (a batch holds at most 100,000 cases). */
const MAX_PARTS = 100_000;

function compact(r: CaseResult): CaseResult {
  const out: CaseResult = { index: r.index, passed: r.passed, durationMs: r.durationMs };
  if (r.error) out.error = { code: r.error.code, message: truncate(r.error.message, 100), ...(r.error.retryable !== undefined ? { retryable: r.error.retryable } : {}) };
  const names = (list: string[] | undefined) => list && list.slice(0, 4).map((n) => truncate(n, 40)).concat(list.length > 4 ? [`…[${list.length - 4} more]`] : []);
  if (r.propViolations) out.propViolations = names(r.propViolations);
  if (r.softViolations) out.softViolations = names(r.softViolations);
  if (r.mrViolations) out.mrViolations = names(r.mrViolations);
  return out;
}

/** Passes per pass list (a results payload that is a JSON array). */
const PASS_LIST_MAX = 4096;

const isPlainPass = (r: CaseResult): boolean =>
  r.passed === true && r.error === undefined && r.propViolations === undefined && r.softViolations === undefined && r.mrViolations === undefined && r.output === undefined && r.http === undefined;

/** A pass list's results: [index, durationMs, …], each pair checked as isResult checks a result's. */
function passList(value: unknown[], what: string): CaseResult[] {
  if (value.length % 2 !== 0 || value.length > 2 * PASS_LIST_MAX) throw new MetaguardError('MG_ERR_CODEC', `${what}: a pass list must hold index, durationMs pairs (at most ${PASS_LIST_MAX})`);
  const out: CaseResult[] = new Array(value.length / 2);
  for (let i = 0; i < value.length; i += 2) {
    const index = value[i];
    const durationMs = value[i + 1];
    if (!Number.isSafeInteger(index) || (index as number) < 0 || typeof durationMs !== 'number' || !Number.isFinite(durationMs) || durationMs < 0) throw new MetaguardError('MG_ERR_CODEC', `${what}: pass ${i / 2} is not a case index and a duration`);
    out[i / 2] = { index: index as number, passed: true, durationMs };
  }
  return out;
}

/**
 * Each result as its JSON bytes. The common case — every result ASCII — is encoded into one buffer and
 * cut into views, rather than one Buffer per result (half the cost of a result's payload).
 */
function resultPayloads(results: CaseResult[]): Buffer[] {
  const texts = results.map((r) => JSON.stringify(r));
  const joined = texts.join('');
  const all = Buffer.from(joined);
  if (all.byteLength !== joined.length) return texts.map((t) => Buffer.from(t));
  const out: Buffer[] = new Array(texts.length);
  let at = 0;
  for (let i = 0; i < texts.length; i++) {
    out[i] = all.subarray(at, at + texts[i].length);
    at += texts[i].length;
  }
  return out;
}

/**
 * Encodes a batch's results as frames of at most `maxBytes` each. One frame when the whole encoding
 * fits (compressed, if the codec compresses); else parts, each opening with a `{part, parts}` payload,
 * cut by raw size (a frame is never larger than its raw payloads plus framing, so no part can exceed
 * the limit whatever compression does). Results arrive bounded (execution/limits.ts, well under the
 * smallest allowed limit); one that still does not fit is compacted (preview dropped, message and
 * names cut further).
 */
export function encodeResultFrames(codec: Codec, results: CaseResult[], maxBytes: number, options: { passLists?: boolean } = {}): Uint8Array[] {
  const room = maxBytes - FRAME_HEADER_BYTES - PART_HEADER_ROOM;
  let others = results;
  const lists: Buffer[] = [];
  if (options.passLists) {
    // Plain passes (no error, no violation, no output, no HTTP trace: the common case) as JSON arrays
    // [index, durationMs, index, durationMs, …] of at most PASS_LIST_MAX passes and `room` bytes each,
    // durations to the microsecond:
    // one JSON.parse of numbers per list for the coordinator instead of one object per result.
    others = [];
    let list: number[] = [];
    const flush = () => {
      if (list.length) lists.push(Buffer.from(JSON.stringify(list)));
      list = [];
    };
    const perList = Math.max(1, Math.min(PASS_LIST_MAX, Math.floor((room - 2) / 48)));
    for (const r of results) {
      if (isPlainPass(r)) {
        // To the microsecond: shorter to write and to parse (10 bytes a pass instead of ~25).
        list.push(r.index, Math.round(r.durationMs * 1000) / 1000);
        if (list.length >= 2 * perList) flush();
      } else others.push(r);
    }
    flush();
  }
  const payloads = [...lists, ...resultPayloads(others).map((p0, i) => {
    let p = p0;
    const r = others[i];
    if (4 + p.byteLength > room) p = Buffer.from(JSON.stringify(compact(r)));
    if (4 + p.byteLength > room) throw new MetaguardError('MG_ERR_CODEC', `the result of case ${r.index} needs ${p.byteLength} bytes even compacted; the frame limit is ${maxBytes}`);
    return p;
  })];
  const whole = codec.encode(payloads);
  if (whole.byteLength <= maxBytes) return [whole];
  const groups: Buffer[][] = [];
  let group: Buffer[] = [];
  let size = 0;
  for (const p of payloads) {
    if (group.length > 0 && size + 4 + p.byteLength > room) {
      groups.push(group);
      group = [];
      size = 0;
    }
    group.push(p);
    size += 4 + p.byteLength;
  }
  if (group.length > 0) groups.push(group);
  return groups.map((g, i) => codec.encode([Buffer.from(JSON.stringify({ part: i + 1, parts: groups.length } satisfies ResultsPart)), ...g]));
}

const isPartHeader = (v: unknown): v is ResultsPart => {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || 'index' in v) return false;
  const { part, parts } = v as ResultsPart;
  return Number.isInteger(part) && Number.isInteger(parts) && part >= 1 && part <= parts && parts <= MAX_PARTS;
};

/**
 * Decodes a results frame: every result (each field checked), and which part of its batch's results it
 * is when the worker split them (`part` absent: the frame holds them all).
 */
export function decodeResultsFrame(codec: Codec, frame: Uint8Array): { part?: ResultsPart; results: CaseResult[] } {
  const payloads = codec.decode(frame);
  let part: ResultsPart | undefined;
  let from = 0;
  if (payloads.length > 0) {
    const first = parseJson(payloads[0], 'result 0');
    if (first !== null && typeof first === 'object' && !Array.isArray(first) && 'part' in first) {
      if (!isPartHeader(first)) throw new MetaguardError('MG_ERR_CODEC', 'results part header: not a well-formed {part, parts}');
      if (payloads.length < 2) throw new MetaguardError('MG_ERR_CODEC', `results part ${first.part}/${first.parts}: no results`);
      part = { part: first.part, parts: first.parts };
      from = 1;
    }
  }
  const results: CaseResult[] = [];
  for (let i = from; i < payloads.length; i++) {
    const value = parseJson(payloads[i], `result ${i - from}`);
    // A JSON array is a pass list (encodeResultFrames with passLists); anything else one result.
    if (Array.isArray(value)) {
      for (const r of passList(value, `result ${i - from}`)) results.push(r);
      continue;
    }
    if (!isResult(value)) throw new MetaguardError('MG_ERR_CODEC', `result ${i - from}: not a well-formed result`);
    results.push(value);
  }
  return part ? { part, results } : { results };
}

/** The results of a frame (whole or a part). */
export const decodeResults = (codec: Codec, frame: Uint8Array): CaseResult[] => decodeResultsFrame(codec, frame).results;

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

/**
 * MAC of a typed record: a tag (what kind of record) and length-prefixed fields, then raw bytes. The
 * tag keeps a signature of one kind from passing as another; the lengths keep fields from shifting.
 */
function typedMac(key: string, tag: string, fields: readonly string[], bytes?: Uint8Array): Buffer {
  const h = createHmac('sha256', key).update(`metaguard/${tag}/1\n`);
  for (const f of fields) h.update(`${Buffer.byteLength(f)}:${f}\n`);
  if (bytes) h.update(bytes);
  return h.digest();
}

function macMatches(given: string | undefined, expected: Buffer): boolean {
  if (typeof given !== 'string' || !/^[0-9a-f]{64}$/.test(given)) return false;
  return timingSafeEqual(Buffer.from(given, 'hex'), expected);
}

/** What a results entry is bound to: the job, the batch, the role and the worker that ran it. */
export interface ResultsBinding {
  jobId: string;
  batchId: string;
  role: string;
  workerId: string;
}

export const signResults = (key: string, b: ResultsBinding, frame: Uint8Array): string => typedMac(key, 'results', [b.jobId, b.batchId, b.role, b.workerId], frame).toString('hex');
export const verifyResults = (key: string, b: ResultsBinding, frame: Uint8Array, given: string | undefined): boolean => macMatches(given, typedMac(key, 'results', [b.jobId, b.batchId, b.role, b.workerId], frame));

/**
 * What a dead letter on a job's result stream is bound to: its error too, field by field (the code
 * decides what the coordinator records, the message is shown to the operator).
 */
export interface DeadBinding {
  jobId: string;
  batchId: string;
  role: string;
  error: WireError;
}

const deadFields = (b: DeadBinding) => [b.jobId, b.batchId, b.role, b.error.code, b.error.message, b.error.retryable ? '1' : '0'];
export const signDead = (key: string, b: DeadBinding): string => typedMac(key, 'dead', deadFields(b)).toString('hex');
export const verifyDead = (key: string, b: DeadBinding, given: string | undefined): boolean => macMatches(given, typedMac(key, 'dead', deadFields(b)));

function manifestFields(m: JobManifest): string[] {
  const ref = (r: JobManifest['task']) => [r.sha256, r.ext, r.name];
  // exec (endpoints, header templates, concurrency) is signed as its JSON text: JSON keeps key order
  // through a round trip, so the worker re-serializes exactly what the coordinator signed.
  return [
    m.jobId,
    ...ref(m.task),
    ...ref(m.implementations.baseline),
    ...ref(m.implementations.candidate),
    String(m.seed),
    String(m.timeoutMs),
    String(m.memMb),
    String(m.createdAt),
    m.exec === undefined ? '' : JSON.stringify(m.exec),
  ];
}

export const signManifest = (key: string, m: JobManifest): string => typedMac(key, 'manifest', manifestFields(m)).toString('hex');

/** Throws MG_ERR_HMAC when the manifest is unsigned or its signature does not match (roles swapped, limits changed, …). */
export function verifyManifest(key: string, m: JobManifest): void {
  if (!m.mac) throw new MetaguardError('MG_ERR_HMAC', `job manifest ${m.jobId} is not signed (hmac_key is set)`);
  if (!macMatches(m.mac, typedMac(key, 'manifest', manifestFields(m)))) throw new MetaguardError('MG_ERR_HMAC', `job manifest ${m.jobId} signature does not match (tampered or wrong hmac_key)`);
}
