/**
 * Serialization of case inputs and results inside batch frames: msgpackr with structured-clone
 * extensions. Measured against V8's structured-clone serializer and JSON on case-sized values
 * (bench/serialize.ts): several times faster than v8.serialize/deserialize, which allocate a
 * serializer object per call, while still keeping what JSON loses — undefined, NaN, ±Infinity,
 * typed arrays, Set, Map, Date, BigInt. (-0 comes back as 0.)
 */
import { Packr } from 'msgpackr';
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
