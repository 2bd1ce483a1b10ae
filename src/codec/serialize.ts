/**
 * Serialization of case inputs and results inside batch frames: msgpackr with structured-clone
 * extensions. Measured against V8's structured-clone serializer and JSON on case-sized values
 * (bench/serialize.ts): several times faster than v8.serialize/deserialize, which allocate a
 * serializer object per call, while still keeping what JSON loses — undefined, NaN, ±Infinity,
 * typed arrays, Set, Map, Date, BigInt. (-0 comes back as 0.)
 */
import { Packr, Unpackr } from 'msgpackr';
import { MetaguardError } from '../errors.js';

// Plain objects travel as msgpackr records (self-describing in each payload: no shared structures),
// which leaves msgpack maps free to mean Map: so both plain objects and Maps come back as they went.
const options = { structuredClone: true, moreTypes: true, useRecords: true, mapsAsObjects: false } as const;
const packr = new Packr(options);

export function pack(value: unknown): Uint8Array {
  return packr.pack(value);
}

export function unpack(bytes: Uint8Array, what = 'payload'): unknown {
  try {
    return packr.unpack(bytes);
  } catch (err) {
    throw new MetaguardError('MG_ERR_CODEC', `${what}: cannot deserialize (${(err as Error).message})`);
  }
}

/**
 * Case payloads `{ index, args }` decoded without their record definition: every payload begins with
 * the same bytes (msgpackr's definition of the record { index, args } in slot 0x40, then the index),
 * and reading that definition again for every case is most of a small case's decoding. `unpackCase`
 * checks those bytes, reads the index itself, and decodes `args` with a decoder that already knows
 * slot 0x40 as { index, args } — so a nested { index, args } object (a reference to that slot)
 * decodes exactly as the whole payload would. Anything else goes to `unpack`.
 */
const casePrefix = ((): Uint8Array | undefined => {
  const sample = packr.pack({ index: 0, args: 0 });
  // The layout this relies on: the definition, then index 0 and args 0 as one-byte integers.
  const prefix = sample.subarray(0, sample.length - 2);
  const ok = sample.length > 2 && sample[sample.length - 2] === 0 && sample[sample.length - 1] === 0 && prefix[0] === 0xd4 && prefix[2] === 0x40;
  return ok ? Uint8Array.from(prefix) : undefined;
})();
// Slot 0x40 as the payload's own definition makes it. Marked shared, so that msgpackr puts it back
// after a payload that redefines the slot (ordinary data does, past 63 other object shapes); and put
// back after every call below as well, with the slots a payload added dropped: no payload's decoding
// depends on what this decoder read before.
const caseRecord: string[] & { isShared?: boolean } = Object.assign(['index', 'args'], { isShared: true });
const argsStructures: unknown[] = [caseRecord];
const argsUnpackr = new Unpackr({ ...options, structures: argsStructures as string[][] });

/** `{ index, args }` of a case payload: `unpack`'s value for it, read faster when it has the usual layout. */
export function unpackCase(bytes: Uint8Array, what = 'payload'): unknown {
  const quick = casePrefix && quickCase(bytes, casePrefix);
  if (quick === LEFT_OVER) throw leftOver(bytes, what);
  return quick ?? unpack(bytes, what);
}

/**
 * The quick reader read a whole value and bytes are left behind it: msgpackr reads the same value and
 * refuses the payload for them too, but first writes the value out as JSON for its message (seconds
 * for a forged payload of millions of elements). Refused here instead, as `unpack` would refuse it.
 */
const LEFT_OVER: unique symbol = Symbol('bytes left over');
const leftOver = (p: Uint8Array, what: string) => new MetaguardError('MG_ERR_CODEC', `${what}: cannot deserialize (${p.length - quickAt} bytes left over after the value)`);

/**
 * The index of a payload that begins with the usual case prefix, with `quickAt` at the arguments (and
 * the element budget set); -1 for any other payload.
 */
function quickIndex(p: Uint8Array, prefix: Uint8Array): number {
  const k = prefix.length;
  if (p.length < k + 2) return -1;
  for (let i = 0; i < k; i++) if (p[i] !== prefix[i]) return -1;
  // The index as msgpack writes a non-negative integer: fixint, uint8, uint16 or uint32. Not 0x40–0x7f:
  // after the definition those bytes are record references (the packer writes 64–127 as uint8).
  const t = p[k];
  let index: number;
  let at: number;
  if (t < 0x40) {
    index = t;
    at = k + 1;
  } else if (t === 0xcc) {
    index = p[k + 1];
    at = k + 2;
  } else if (t === 0xcd) {
    index = p[k + 1] * 0x100 + p[k + 2];
    at = k + 3;
  } else if (t === 0xce) {
    index = p[k + 1] * 0x1000000 + p[k + 2] * 0x10000 + p[k + 3] * 0x100 + p[k + 4];
    at = k + 5;
  } else return -1;
  if (at >= p.length) return -1;
  // Arrays of numbers, booleans, null and short ASCII strings (most of what packCaseList's writer
  // writes) are read by readQuick; anything else, or bytes left over, by msgpackr.
  quickAt = at;
  quickBudget = p.length - at;
  return index;
}

/**
 * The index of a case payload whose arguments unpackCase would read on its quick path as an array,
 * found without building the arguments; undefined for any other payload (unpackCase decides those);
 * MG_ERR_CODEC, as from unpackCase, for a value with bytes left over behind it. A worker's threads
 * decode the arguments themselves: its own thread only needs to know each case of a batch is
 * well-formed, and which it is.
 */
export function quickCaseIndex(p: Uint8Array, what = 'payload'): number | undefined {
  if (!casePrefix) return undefined;
  const index = quickIndex(p, casePrefix);
  if (index < 0) return undefined;
  const t = p[quickAt];
  // The arguments must be an array (fixarray, array 16, array 32) for the case to be well-formed.
  if (!((t >= 0x90 && t < 0xa0) || t === 0xdc || t === 0xdd)) return undefined;
  if (!scanQuick(p, 0)) return undefined;
  // A whole value with bytes behind it: refused as unpackCase refuses it (MG_ERR_CODEC).
  if (quickAt !== p.length) throw leftOver(p, what);
  return index;
}

function quickCase(p: Uint8Array, prefix: Uint8Array): { index: number; args: unknown } | typeof LEFT_OVER | undefined {
  const index = quickIndex(p, prefix);
  if (index < 0) return undefined;
  const at = quickAt;
  const args = readQuick(p, 0);
  if (args !== NOT_QUICK) return quickAt === p.length ? { index, args } : LEFT_OVER;
  try {
    return { index, args: argsUnpackr.unpack(p.subarray(at)) };
  } catch {
    // Whatever is wrong is unpack's to say.
    return undefined;
  } finally {
    argsStructures.length = 1;
    argsStructures[0] = caseRecord;
  }
}

/**
 * The reader for the shapes CaseListWriter writes (strings of up to QUICK_STRING characters), each
 * value as msgpackr's `unpack` gives it (a test compares them on generated and on mutated bytes).
 * Bounds are checked before every read, and an array's length against the bytes left and the
 * payload's element budget before it is allocated (forged payloads come from brokers). Returns
 * NOT_QUICK for anything else: record references and definitions (0x40–0x7f, extensions), maps,
 * binaries, 64-bit integers, float32, non-ASCII or longer strings, nesting past QUICK_DEPTH.
 */
const NOT_QUICK: unique symbol = Symbol('not quick');
let quickAt = 0;
/**
 * Elements the arrays of one payload may still claim: every element takes at least one byte, so all
 * the arrays of a payload together hold at most as many elements as it has bytes (nested headers that
 * each claim the whole payload are refused before any is allocated).
 */
let quickBudget = 0;
/** Strings of at most this many characters are read here (built flat); longer ones by msgpackr. */
const QUICK_STRING = 12;
const float64Bytes = new Uint8Array(8);
const float64View = new DataView(float64Bytes.buffer);

function readQuick(p: Uint8Array, depth: number): unknown {
  const end = p.length;
  if (quickAt >= end) return NOT_QUICK;
  const t = p[quickAt++];
  if (t < 0x40) return t;
  if (t >= 0xe0) return t - 0x100;
  if (t >= 0x90 && t < 0xa0) return readQuickArray(p, t & 0x0f, depth);
  if (t >= 0xa0 && t < 0xc0) return readQuickAscii(p, t - 0xa0);
  const at = quickAt;
  switch (t) {
    case 0xc0:
      return null;
    case 0xc2:
      return false;
    case 0xc3:
      return true;
    case 0xcb:
      if (at + 8 > end) return NOT_QUICK;
      for (let i = 0; i < 8; i++) float64Bytes[i] = p[at + i];
      quickAt = at + 8;
      return float64View.getFloat64(0);
    case 0xcc:
      if (at + 1 > end) return NOT_QUICK;
      quickAt = at + 1;
      return p[at];
    case 0xcd:
      if (at + 2 > end) return NOT_QUICK;
      quickAt = at + 2;
      return (p[at] << 8) | p[at + 1];
    case 0xce:
      if (at + 4 > end) return NOT_QUICK;
      quickAt = at + 4;
      return p[at] * 0x1000000 + ((p[at + 1] << 16) | (p[at + 2] << 8) | p[at + 3]);
    case 0xd0:
      if (at + 1 > end) return NOT_QUICK;
      quickAt = at + 1;
      return (p[at] << 24) >> 24;
    case 0xd1:
      if (at + 2 > end) return NOT_QUICK;
      quickAt = at + 2;
      return (((p[at] << 8) | p[at + 1]) << 16) >> 16;
    case 0xd2:
      if (at + 4 > end) return NOT_QUICK;
      quickAt = at + 4;
      return (p[at] << 24) | (p[at + 1] << 16) | (p[at + 2] << 8) | p[at + 3];
    case 0xd9:
      if (at + 1 > end) return NOT_QUICK;
      quickAt = at + 1;
      return readQuickAscii(p, p[at]);
    case 0xda:
      if (at + 2 > end) return NOT_QUICK;
      quickAt = at + 2;
      return readQuickAscii(p, (p[at] << 8) | p[at + 1]);
    case 0xdc:
      if (at + 2 > end) return NOT_QUICK;
      quickAt = at + 2;
      return readQuickArray(p, (p[at] << 8) | p[at + 1], depth);
    case 0xdd:
      if (at + 4 > end) return NOT_QUICK;
      quickAt = at + 4;
      return readQuickArray(p, p[at] * 0x1000000 + ((p[at + 1] << 16) | (p[at + 2] << 8) | p[at + 3]), depth);
    default:
      return NOT_QUICK;
  }
}

function readQuickArray(p: Uint8Array, n: number, depth: number): unknown {
  // Every element takes at least one byte: a length past the bytes left, or past what the payload's
  // other arrays already claimed, is not allocated.
  if (depth > QUICK_DEPTH || n > p.length - quickAt || n > quickBudget) return NOT_QUICK;
  quickBudget -= n;
  const out = new Array(n);
  const end = p.length;
  for (let i = 0; i < n; i++) {
    // Small integers inline (most elements of generated inputs); the rest through readQuick.
    const at = quickAt;
    const t = p[at];
    if (t < 0x40) {
      out[i] = t;
      quickAt = at + 1;
    } else if (t >= 0xe0) {
      out[i] = t - 0x100;
      quickAt = at + 1;
    } else if (t === 0xd1 && at + 3 <= end) {
      out[i] = (((p[at + 1] << 8) | p[at + 2]) << 16) >> 16;
      quickAt = at + 3;
    } else if (t === 0xcd && at + 3 <= end) {
      out[i] = (p[at + 1] << 8) | p[at + 2];
      quickAt = at + 3;
    } else {
      const v = readQuick(p, depth + 1);
      if (v === NOT_QUICK) return NOT_QUICK;
      out[i] = v;
    }
  }
  return out;
}

/**
 * readQuick without the values: true, with `quickAt` past the value, exactly when readQuick would
 * read one (same bounds, same element budget, same depth, same string limits).
 */
function scanQuick(p: Uint8Array, depth: number): boolean {
  const end = p.length;
  if (quickAt >= end) return false;
  const t = p[quickAt++];
  if (t < 0x40 || t >= 0xe0) return true;
  if (t >= 0x90 && t < 0xa0) return scanQuickArray(p, t & 0x0f, depth);
  if (t >= 0xa0 && t < 0xc0) return scanQuickAscii(p, t - 0xa0);
  const at = quickAt;
  switch (t) {
    case 0xc0:
    case 0xc2:
    case 0xc3:
      return true;
    case 0xcb:
      return skip(at, 8, end);
    case 0xcc:
    case 0xd0:
      return skip(at, 1, end);
    case 0xcd:
    case 0xd1:
      return skip(at, 2, end);
    case 0xce:
    case 0xd2:
      return skip(at, 4, end);
    case 0xd9:
      return skip(at, 1, end) && scanQuickAscii(p, p[at]);
    case 0xda:
      return skip(at, 2, end) && scanQuickAscii(p, (p[at] << 8) | p[at + 1]);
    case 0xdc:
      return skip(at, 2, end) && scanQuickArray(p, (p[at] << 8) | p[at + 1], depth);
    case 0xdd:
      return skip(at, 4, end) && scanQuickArray(p, p[at] * 0x1000000 + ((p[at + 1] << 16) | (p[at + 2] << 8) | p[at + 3]), depth);
    default:
      return false;
  }
}

/** Moves `quickAt` past `bytes` bytes at `at`, when they are there. */
function skip(at: number, bytes: number, end: number): boolean {
  if (at + bytes > end) return false;
  quickAt = at + bytes;
  return true;
}

function scanQuickArray(p: Uint8Array, n: number, depth: number): boolean {
  if (depth > QUICK_DEPTH || n > p.length - quickAt || n > quickBudget) return false;
  quickBudget -= n;
  const end = p.length;
  for (let i = 0; i < n; i++) {
    const at = quickAt;
    const t = p[at];
    if (t < 0x40 || t >= 0xe0) quickAt = at + 1;
    else if ((t === 0xd1 || t === 0xcd) && at + 3 <= end) quickAt = at + 3;
    else if (!scanQuick(p, depth + 1)) return false;
  }
  return true;
}

function scanQuickAscii(p: Uint8Array, n: number): boolean {
  const at = quickAt;
  if (n > p.length - at || n > QUICK_STRING) return false;
  for (let i = 0; i < n; i++) if (p[at + i] >= 0x80) return false;
  quickAt = at + n;
  return true;
}

function readQuickAscii(p: Uint8Array, n: number): unknown {
  const at = quickAt;
  // Short, so that `+=` builds a flat string (a longer one would be a chain of one-character pieces,
  // ~32 bytes of heap per character).
  if (n > p.length - at || n > QUICK_STRING) return NOT_QUICK;
  let s = '';
  for (let i = 0; i < n; i++) {
    const c = p[at + i];
    if (c >= 0x80) return NOT_QUICK;
    s += String.fromCharCode(c);
  }
  quickAt = at + n;
  return s;
}

// Cases as a task's gen returned them: a function (which structured clone refuses and msgpackr would
// quietly turn into undefined) fails the gen instead of reaching an implementation as something else.
const strictPackr = new Packr({
  ...options,
  writeFunction: () => {
    throw new TypeError('a function cannot be a case argument');
  },
});

/**
 * Every case `{ index, args }` of a generated list serialized back to back (case i in
 * bytes[ends[i-1] .. ends[i])), as one buffer: packed once in the thread that ran gen, these bytes go
 * to both roles' case threads and into batch frames without being serialized again. Throws (naming
 * the case) when a case cannot be serialized.
 *
 * A case whose arguments are plain arrays of numbers, booleans, null and ASCII strings (the usual
 * shape of generated inputs) is written by `CaseListWriter`, 2–3× faster than msgpackr and byte for
 * byte what msgpackr writes (a test compares them); any other case is msgpackr's.
 */
export function packCaseList(cases: readonly unknown[][]): { bytes: Uint8Array; ends: Uint32Array } {
  const n = cases.length;
  const ends = new Uint32Array(n);
  const w = new CaseListWriter(Math.min(Math.max(1 << 16, n * 32), 1 << 26));
  for (let i = 0; i < n; i++) {
    const start = w.pos;
    let quick = false;
    try {
      quick = casePrefix !== undefined && w.writeCase(casePrefix, i, cases[i]);
    } catch {
      // A getter or a proxy trap threw: msgpackr meets it again below and the case is refused, named.
    }
    if (!quick) {
      w.pos = start;
      let p: Uint8Array;
      try {
        p = strictPackr.pack({ index: i, args: cases[i] });
      } catch (err) {
        throw new MetaguardError('MG_ERR_TASK_GEN', `case ${i} cannot be serialized: ${(err as Error).message}`);
      }
      w.reserve(p.byteLength);
      w.buf.set(p, w.pos);
      w.pos += p.byteLength;
    }
    ends[i] = w.pos;
  }
  return { bytes: w.buf.slice(0, w.pos), ends };
}

/**
 * An array msgpackr writes as an array: it goes by `constructor === Array` (an array whose constructor
 * was changed is written as something else, or refused), and only a real array is taken here.
 */
const isQuickArray = (v: unknown): v is unknown[] => Array.isArray(v) && (v as { constructor?: unknown }).constructor === Array;
/** Arrays one case may hold before the writer leaves it to msgpackr (each is checked against the others: a shared one is a reference). */
const QUICK_ARRAYS = 16;
const QUICK_DEPTH = 8;

/**
 * Writes `{ index, args }` as msgpackr does (the record definition, then the index, then the arguments)
 * for arrays — constructor Array, none reached twice — of numbers, booleans, null and
 * ASCII strings, nested up to QUICK_DEPTH. Anything else (objects, undefined, holes, other strings,
 * typed arrays, shared arrays, which msgpackr writes as references) makes `writeCase` return false with
 * the case partly written: the caller rewinds `pos` and packs that case with msgpackr.
 */
class CaseListWriter {
  buf: Uint8Array;
  view: DataView;
  pos = 0;
  readonly #seen: unknown[] = [];

  constructor(capacity: number) {
    this.buf = new Uint8Array(capacity);
    this.view = new DataView(this.buf.buffer);
  }

  reserve(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    let capacity = this.buf.length * 2;
    while (capacity < this.pos + bytes) capacity *= 2;
    const next = new Uint8Array(capacity);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  writeCase(prefix: Uint8Array, index: number, args: unknown): boolean {
    if (!isQuickArray(args)) return false;
    this.reserve(prefix.length + 5);
    this.buf.set(prefix, this.pos);
    this.pos += prefix.length;
    this.pos = this.#uint(this.buf, this.pos, index);
    this.#seen.length = 0;
    return this.#array(args, 0);
  }

  /** A non-negative 32-bit integer as msgpackr writes it in a record payload (fixint only below 0x40, as quickCase reads it); returns the next position. */
  #uint(buf: Uint8Array, at: number, v: number): number {
    let pos = at;
    if (v < 0x40) buf[pos++] = v;
    else if (v < 0x100) {
      buf[pos++] = 0xcc;
      buf[pos++] = v;
    } else if (v < 0x10000) {
      buf[pos++] = 0xcd;
      buf[pos++] = v >> 8;
      buf[pos++] = v & 0xff;
    } else {
      buf[pos++] = 0xce;
      this.view.setUint32(pos, v);
      pos += 4;
    }
    return pos;
  }

  #array(a: unknown[], depth: number): boolean {
    const seen = this.#seen;
    if (depth > QUICK_DEPTH || seen.length >= QUICK_ARRAYS || seen.includes(a)) return false;
    seen.push(a);
    const n = a.length;
    this.reserve(5 + 9 * n);
    let buf = this.buf;
    let pos = this.pos;
    if (n < 0x10) buf[pos++] = 0x90 | n;
    else if (n < 0x10000) {
      buf[pos++] = 0xdc;
      buf[pos++] = n >> 8;
      buf[pos++] = n & 0xff;
    } else {
      buf[pos++] = 0xdd;
      this.view.setUint32(pos, n);
      pos += 4;
    }
    for (let i = 0; i < n; i++) {
      const v = a[i];
      if (typeof v === 'number') {
        // msgpackr's choices, branch for branch: 32-bit integers in their smallest form, else a float64.
        if (v >>> 0 === v) pos = this.#uint(buf, pos, v);
        else if (v >> 0 === v) {
          if (v >= -0x20) buf[pos++] = 0x100 + v;
          else if (v >= -0x80) {
            buf[pos++] = 0xd0;
            buf[pos++] = v + 0x100;
          } else if (v >= -0x8000) {
            buf[pos++] = 0xd1;
            buf[pos++] = (v >> 8) & 0xff;
            buf[pos++] = v & 0xff;
          } else {
            buf[pos++] = 0xd2;
            this.view.setInt32(pos, v);
            pos += 4;
          }
        } else {
          buf[pos++] = 0xcb;
          this.view.setFloat64(pos, v);
          pos += 8;
        }
      } else if (v === true) buf[pos++] = 0xc3;
      else if (v === false) buf[pos++] = 0xc2;
      else if (v === null) buf[pos++] = 0xc0;
      else if (typeof v === 'string') {
        this.pos = pos;
        if (!this.#ascii(v)) return false;
        this.reserve(9 * (n - i - 1));
        buf = this.buf;
        pos = this.pos;
      } else if (isQuickArray(v)) {
        this.pos = pos;
        if (!this.#array(v, depth + 1)) return false;
        // Room again for the rest of this array's elements at their largest.
        this.reserve(9 * (n - i - 1));
        buf = this.buf;
        pos = this.pos;
      } else return false;
    }
    this.pos = pos;
    return true;
  }

  /** An ASCII string as msgpackr writes it (header by byte length); false for any other character. */
  #ascii(s: string): boolean {
    const n = s.length;
    this.reserve(5 + n);
    const buf = this.buf;
    let pos = this.pos;
    if (n < 0x20) buf[pos++] = 0xa0 | n;
    else if (n < 0x100) {
      buf[pos++] = 0xd9;
      buf[pos++] = n;
    } else if (n < 0x10000) {
      buf[pos++] = 0xda;
      buf[pos++] = n >> 8;
      buf[pos++] = n & 0xff;
    } else {
      buf[pos++] = 0xdb;
      this.view.setUint32(pos, n);
      pos += 4;
    }
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) return false;
      buf[pos++] = c;
    }
    this.pos = pos;
    return true;
  }
}

/**
 * Serialized cases by index, as a job carries them: an array of payloads is one, and so is
 * PackedCases's `payloads`, which makes the views of a range only when the range is asked for.
 */
export interface PayloadList {
  readonly length: number;
  /** Payloads `start` to `end` (exclusive), like Array.prototype.slice with non-negative bounds. */
  slice(start: number, end?: number): Uint8Array[];
}

/**
 * The cases of packCaseList's bytes, decoded when first asked for: a queue coordinator ships the bytes
 * as they are and needs the values only of the cases its report shows. `payloads.slice(a, b)` gives
 * cases a..b-1's own bytes (views into `bytes`), made per slice: a view per case for the whole run
 * cost 20-40 ms before the first chunk of a 100,000-case run, and memory for its length. An array of
 * argument lists offers the same two members (`length`, `at`), so either can be a job's cases.
 */
export class PackedCases {
  readonly length: number;
  readonly payloads: PayloadList;
  readonly #bytes: Uint8Array;
  readonly #ends: Uint32Array;
  readonly #values: (unknown[] | undefined)[];

  /** Checks the layout (one case per end, ends rising to the last byte); the values are checked as they are decoded. */
  constructor(bytes: Uint8Array, ends: Uint32Array, n: number) {
    if (ends.length !== n || (n > 0 && ends[n - 1] !== bytes.byteLength)) throw new MetaguardError('MG_ERR_CODEC', `generated cases: expected ${n} cases in ${bytes.byteLength} bytes`);
    let start = 0;
    for (let i = 0; i < n; i++) {
      if (ends[i] < start) throw new MetaguardError('MG_ERR_CODEC', `generated cases: case ${i} has a negative length`);
      start = ends[i];
    }
    this.length = n;
    this.#bytes = bytes;
    this.#ends = ends;
    this.#values = new Array(n);
    this.payloads = { length: n, slice: (from, to) => this.#views(from, to) };
  }

  /** Case i's bytes (0 <= i < length). */
  #payload(i: number): Uint8Array {
    return this.#bytes.subarray(i === 0 ? 0 : this.#ends[i - 1], this.#ends[i]);
  }

  #views(from: number, to = this.length): Uint8Array[] {
    const a = Math.max(0, Math.min(this.length, Math.trunc(from) || 0));
    const b = Math.max(a, Math.min(this.length, Math.trunc(to) || 0));
    const out = new Array<Uint8Array>(b - a);
    for (let i = a; i < b; i++) out[i - a] = this.#payload(i);
    return out;
  }

  /** Case i's argument list; MG_ERR_CODEC when its bytes are not `{ index: i, args: [...] }`. */
  at(i: number): unknown[] | undefined {
    if (!(i >= 0 && i < this.length)) return undefined;
    let v = this.#values[i];
    if (v === undefined) {
      const c = unpackCase(this.#payload(i), `generated case ${i}`) as { index?: unknown; args?: unknown } | null;
      if (c === null || typeof c !== 'object' || c.index !== i || !Array.isArray(c.args)) throw new MetaguardError('MG_ERR_CODEC', `generated cases: case ${i} is not { index: ${i}, args: [...] }`);
      v = this.#values[i] = c.args;
    }
    return v;
  }
}
