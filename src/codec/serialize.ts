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
  return quick ?? unpack(bytes, what);
}

function quickCase(p: Uint8Array, prefix: Uint8Array): { index: number; args: unknown } | undefined {
  const k = prefix.length;
  if (p.length < k + 2) return undefined;
  for (let i = 0; i < k; i++) if (p[i] !== prefix[i]) return undefined;
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
  } else return undefined;
  if (at >= p.length) return undefined;
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
 */
export function packCaseList(cases: readonly unknown[][]): { bytes: Uint8Array; ends: Uint32Array } {
  const parts: Uint8Array[] = new Array(cases.length);
  const ends = new Uint32Array(cases.length);
  let total = 0;
  for (let i = 0; i < cases.length; i++) {
    try {
      parts[i] = strictPackr.pack({ index: i, args: cases[i] });
    } catch (err) {
      throw new MetaguardError('MG_ERR_TASK_GEN', `case ${i} cannot be serialized: ${(err as Error).message}`);
    }
    total += parts[i].byteLength;
    ends[i] = total;
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.byteLength;
  }
  return { bytes, ends };
}

/**
 * The cases of packCaseList's bytes, decoded when first asked for: a queue coordinator ships the bytes
 * as they are and needs the values only of the cases its report shows. `payloads[i]` is case i's
 * own bytes (a view into `bytes`). An array of argument lists offers the same two members (`length`,
 * `at`), so either can be a job's cases.
 */
export class PackedCases {
  readonly length: number;
  readonly payloads: Uint8Array[];
  readonly #values: (unknown[] | undefined)[];

  /** Checks the layout (one case per end, ends rising to the last byte); the values are checked as they are decoded. */
  constructor(bytes: Uint8Array, ends: Uint32Array, n: number) {
    if (ends.length !== n || (n > 0 && ends[n - 1] !== bytes.byteLength)) throw new MetaguardError('MG_ERR_CODEC', `generated cases: expected ${n} cases in ${bytes.byteLength} bytes`);
    this.length = n;
    this.payloads = new Array(n);
    this.#values = new Array(n);
    let start = 0;
    for (let i = 0; i < n; i++) {
      const end = ends[i];
      if (end < start) throw new MetaguardError('MG_ERR_CODEC', `generated cases: case ${i} has a negative length`);
      this.payloads[i] = bytes.subarray(start, end);
      start = end;
    }
  }

  /** Case i's argument list; MG_ERR_CODEC when its bytes are not `{ index: i, args: [...] }`. */
  at(i: number): unknown[] | undefined {
    if (!(i >= 0 && i < this.length)) return undefined;
    let v = this.#values[i];
    if (v === undefined) {
      const c = unpackCase(this.payloads[i], `generated case ${i}`) as { index?: unknown; args?: unknown } | null;
      if (c === null || typeof c !== 'object' || c.index !== i || !Array.isArray(c.args)) throw new MetaguardError('MG_ERR_CODEC', `generated cases: case ${i} is not { index: ${i}, args: [...] }`);
      v = this.#values[i] = c.args;
    }
    return v;
  }
}
