/**
 * The batch frame codecs: the pure-JS one and the native one (native/, src/codec/native.ts).
 * Both must round-trip, read each other's frames, and refuse hostile frames with MG_ERR_CODEC
 * (never a crash, a hang or a big allocation).
 *
 * The native tests skip, with the load error as the reason, only when the binary is not built;
 * METAGUARD_REQUIRE_NATIVE=1 (CI, after building it) turns that skip into a failure. The suite runs
 * under METAGUARD_NATIVE=0 too, where `createCodec` must pick the JS codec.
 * METAGUARD_FUZZ_MS sets each fuzz property's time budget (default 2000 ms).
 *
 * Run: node --import tsx --test test/codec.test.ts
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';

import { isMetaguardError } from '../src/errors.js';
import { createCodec, nativeDisabledByEnv } from '../src/codec/index.js';
import { crc32c } from '../src/codec/crc32c.js';
import { FLAG_LZ4, FRAME_HEADER_BYTES, MAX_FRAME_BODY } from '../src/codec/frame.js';
import { createJsCodec } from '../src/codec/js.js';
import {
  NATIVE_PATH_ENV,
  createNativeCodec,
  nativeCandidatePaths,
  nativeLoadError,
  sdNotify,
  tryLoadNativeBinding,
  type NativeBinding,
} from '../src/codec/native.js';
import type { Codec } from '../src/codec/types.js';
import { PackedCases, pack, packCaseList, quickCaseIndex, unpack, unpackCase } from '../src/codec/serialize.js';
import { decodeCasesWithPayloads, encodeCases } from '../src/queue/messages.js';
import { packageRoot } from '../src/util/paths.js';

const FUZZ_MS = Number(process.env.METAGUARD_FUZZ_MS ?? 2000);
const binding: NativeBinding | undefined = tryLoadNativeBinding();
const requireNative = process.env.METAGUARD_REQUIRE_NATIVE === '1';
const nativeSkip: string | false = binding ? false : `native binary not built: ${nativeLoadError()?.message}`;
if (requireNative && nativeSkip) throw new Error(`METAGUARD_REQUIRE_NATIVE=1 but ${nativeSkip}`);

// ---------------------------------------------------------------------------------------------
// Fixtures

/** Deterministic pseudo-random bytes (xorshift32): incompressible. */
function noise(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x;
  }
  return out;
}

/** Highly compressible bytes. */
function text(length: number, seed = 0): Uint8Array {
  const words = ['case', 'index', 'args', 'passed', 'baseline', 'candidate', 'relation', 'property'];
  const out = Buffer.alloc(length);
  let off = 0;
  for (let i = seed; off < length; i++) off += out.write(`${words[i % words.length]} ${i % 97} `, off);
  return out;
}

const batches: Record<string, () => Uint8Array[]> = {
  'empty batch': () => [],
  'empty payloads': () => [new Uint8Array(0), new Uint8Array(0), new Uint8Array(0)],
  '1 payload': () => [text(40)],
  '1,000 payloads': () => Array.from({ length: 1000 }, (_, i) => text(20 + (i % 90), i)),
  'large payload (> 1 MiB, compressible)': () => [text(1_500_000), text(10)],
  'large payload (> 1 MiB, incompressible)': () => [noise(1_200_000, 7)],
  'incompressible payloads': () => Array.from({ length: 50 }, (_, i) => noise(100 + i, i + 1)),
  'mixed views (offsets into shared buffers)': () => {
    const shared = text(4096);
    return [shared.subarray(10, 200), shared.subarray(0, 0), new Uint8Array(shared.buffer, shared.byteOffset + 300, 1000), noise(600)];
  },
};

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function assertPayloads(actual: Uint8Array[], expected: Uint8Array[], what: string): void {
  assert.equal(actual.length, expected.length, `${what}: payload count`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(actual[i] instanceof Uint8Array, `${what}: payload ${i} is a Uint8Array`);
    assert.ok(bytesEqual(actual[i], expected[i]), `${what}: payload ${i} differs`);
  }
}

/** Rewrites the frame's checksum, so a test reaches the checks behind it. */
function reseal(frame: Uint8Array): Uint8Array {
  const crc = crc32c(frame, FRAME_HEADER_BYTES, frame.byteLength, crc32c(frame, 0, 16));
  new DataView(frame.buffer, frame.byteOffset, frame.byteLength).setUint32(16, crc, true);
  return frame;
}

function header(fields: { flags?: number; count: number; rawLength: number }, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + body.byteLength);
  const view = new DataView(frame.buffer);
  frame.set([0x4d, 0x47, 0x46, 0x31, 1, fields.flags ?? 0]);
  view.setUint32(8, fields.count, true);
  view.setUint32(12, fields.rawLength, true);
  frame.set(body, FRAME_HEADER_BYTES);
  return reseal(frame);
}

/** Calls `fn`, which must throw an error with code MG_ERR_CODEC. */
function assertCodecError(fn: () => unknown, what: string, metaguard = true): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `${what}: expected MG_ERR_CODEC, got a result`);
  assert.equal((caught as { code?: unknown }).code, 'MG_ERR_CODEC', `${what}: ${String(caught)}`);
  if (metaguard) assert.ok(isMetaguardError(caught), `${what}: not a MetaguardError: ${String(caught)}`);
}

/** Decodes `frame`: returns the payloads, or undefined when it threw MG_ERR_CODEC (anything else fails). */
function decodeOrCodecError(decode: (f: Uint8Array) => Uint8Array[], frame: Uint8Array): Uint8Array[] | undefined {
  try {
    return decode(frame);
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'MG_ERR_CODEC') throw err;
    return undefined;
  }
}

function rssGrowthMb(fn: () => void): number {
  const before = process.memoryUsage().rss;
  fn();
  return (process.memoryUsage().rss - before) / (1024 * 1024);
}

// ---------------------------------------------------------------------------------------------
// Both codecs

interface Impl {
  name: 'js' | 'native';
  skip: string | false;
  make(compress?: boolean): Codec;
}

const impls: Impl[] = [
  { name: 'js', skip: false, make: (compress = true) => createJsCodec({ compress }) },
  { name: 'native', skip: nativeSkip, make: (compress = true) => createNativeCodec({ compress }, binding) },
];

for (const impl of impls) {
  describe(`${impl.name} codec`, { skip: impl.skip }, () => {
    it('reports its implementation', () => {
      assert.equal(impl.make().impl, impl.name);
    });

    for (const [name, make] of Object.entries(batches)) {
      for (const compress of [true, false]) {
        it(`round-trips: ${name}${compress ? '' : ' (compression off)'}`, () => {
          const codec = impl.make(compress);
          const payloads = make();
          const frame = codec.encode(payloads);
          assertPayloads(codec.decode(frame), payloads, name);
          if (!compress) assert.equal(frame[5], 0, 'compression off means a raw body');
        });
      }
    }

    it('compresses compressible bodies and leaves incompressible ones raw', () => {
      const codec = impl.make();
      const packed = codec.encode([text(100_000)]);
      assert.equal(packed[5] & FLAG_LZ4, FLAG_LZ4);
      assert.ok(packed.byteLength < 50_000, `compressed to ${packed.byteLength}`);
      const raw = codec.encode([noise(100_000)]);
      assert.equal(raw[5], 0);
      assert.equal(raw.byteLength, FRAME_HEADER_BYTES + 4 + 100_000);
      // Below 512 raw bytes nothing is compressed, however compressible.
      assert.equal(codec.encode([text(500)])[5], 0);
    });

    it('encodes the same batch many times in a row (reused buffers never leak into frames)', () => {
      const codec = impl.make();
      const frames: Uint8Array[] = [];
      const sets = [batches['1,000 payloads'](), batches['incompressible payloads'](), batches['1 payload']()];
      for (let round = 0; round < 3; round++) for (const set of sets) frames.push(codec.encode(set));
      frames.forEach((frame, i) => assertPayloads(codec.decode(frame), sets[i % 3], `frame ${i}`));
    });

    it('round-trips 200,000 empty payloads', () => {
      const codec = impl.make();
      const payloads = Array.from({ length: 200_000 }, () => new Uint8Array(0));
      assertPayloads(codec.decode(codec.encode(payloads)), payloads, '200k');
    });

    it('refuses a frame truncated at every length', () => {
      for (const compress of [false, true]) {
        const codec = impl.make(compress);
        const frame = codec.encode(Array.from({ length: 12 }, (_, i) => text(60, i)));
        assert.equal(frame[5], compress ? FLAG_LZ4 : 0);
        for (let len = 0; len < frame.byteLength; len++) {
          assertCodecError(() => codec.decode(frame.slice(0, len)), `truncated to ${len} (compress ${compress})`);
        }
        // Extra bytes are as wrong as missing ones.
        const longer = new Uint8Array(frame.byteLength + 1);
        longer.set(frame);
        assertCodecError(() => codec.decode(longer), `one extra byte (compress ${compress})`);
      }
    });

    it('refuses every single-bit flip of a small frame', () => {
      for (const compress of [false, true]) {
        const codec = impl.make(compress);
        const frame = codec.encode(Array.from({ length: 12 }, (_, i) => text(60, i)));
        for (let bit = 0; bit < frame.byteLength * 8; bit++) {
          const flipped = frame.slice();
          flipped[bit >> 3] ^= 1 << (bit & 7);
          assertCodecError(() => codec.decode(flipped), `bit ${bit} flipped (compress ${compress})`);
        }
      }
    });

    it('refuses sealed frames whose lengths lie, quickly and without allocating', () => {
      const codec = impl.make();
      const growth = rssGrowthMb(() => {
        const lies: Record<string, Uint8Array> = {
          '4 GiB raw body': header({ count: 1, rawLength: 0xffffffff }, new Uint8Array(8)),
          '2^32-1 payloads': header({ count: 0xffffffff, rawLength: 16 }, new Uint8Array(16)),
          'both': header({ count: 0xffffffff, rawLength: 0xffffffff }),
          'body at the limit, 8 bytes sent': header({ count: 1, rawLength: MAX_FRAME_BODY }, new Uint8Array(8)),
          'compressed, 4 GiB claimed': header({ flags: FLAG_LZ4, count: 1, rawLength: 0xffffffff }, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0])),
          'compressed, 256 MiB from 16 bytes': header(
            { flags: FLAG_LZ4, count: 1, rawLength: MAX_FRAME_BODY },
            Uint8Array.from([...u32le(MAX_FRAME_BODY), ...new Uint8Array(12).fill(0xff)]),
          ),
          'compressed, size prefix disagrees': header({ flags: FLAG_LZ4, count: 1, rawLength: 100 }, Uint8Array.from([...u32le(99), 0x10, 0])),
          'compressed, no size prefix': header({ flags: FLAG_LZ4, count: 0, rawLength: 0 }, new Uint8Array(2)),
          'count larger than the body can hold': header({ count: 5, rawLength: 16 }, new Uint8Array(16)),
          'payload length runs past the body': header({ count: 1, rawLength: 8 }, Uint8Array.from([...u32le(5), 1, 2, 3, 4])),
          'trailing bytes after the payloads': header({ count: 1, rawLength: 8 }, Uint8Array.from([...u32le(2), 1, 2, 3, 4])),
          'unknown flag': header({ flags: 2, count: 0, rawLength: 0 }),
        };
        for (const [what, frame] of Object.entries(lies)) assertCodecError(() => codec.decode(frame), what);
        // A compressed frame claiming ~255x its size with a garbage block: the allocation is bounded
        // by what was sent (here ~2.5 MB), and the block is refused.
        const block = new Uint8Array(10_000).fill(0xff);
        const claim = (block.byteLength) * 255;
        assertCodecError(
          () => codec.decode(header({ flags: FLAG_LZ4, count: 1, rawLength: claim }, Uint8Array.from([...u32le(claim), ...block]))),
          'garbage LZ4 block',
        );
      });
      assert.ok(growth < 100, `RSS grew by ${growth.toFixed(1)} MB`);
    });

    it('fuzz: arbitrary bytes decode or throw MG_ERR_CODEC', () => {
      const codec = impl.make();
      const magic = Uint8Array.from([0x4d, 0x47, 0x46, 0x31, 1]);
      const frames = fc.oneof(
        fc.uint8Array({ maxLength: 300 }),
        // Past the magic and version, so the deeper checks get exercised.
        fc.tuple(fc.constantFrom(0, 1), fc.uint8Array({ minLength: 14, maxLength: 300 })).map(([flags, rest]) => {
          const f = new Uint8Array(5 + 1 + rest.byteLength);
          f.set(magic);
          f[5] = flags;
          f.set(rest, 6);
          return f;
        }),
        // …and with a correct checksum too.
        fc.tuple(fc.constantFrom(0, 1), fc.nat(40), fc.uint8Array({ maxLength: 300 })).map(([flags, count, body]) =>
          header({ flags, count, rawLength: flags ? (body.byteLength >= 4 ? body[0] | (body[1] << 8) : body.byteLength) : body.byteLength }, body),
        ),
      );
      fc.assert(
        fc.property(frames, (frame) => {
          decodeOrCodecError((f) => codec.decode(f), frame);
        }),
        { interruptAfterTimeLimit: FUZZ_MS, numRuns: 1e6 },
      );
    });

    it('fuzz: mutated valid frames (checksum fixed) decode or throw MG_ERR_CODEC', () => {
      const codec = impl.make();
      const payloadsArb = fc.array(fc.oneof(fc.uint8Array({ maxLength: 80 }), fc.nat(300).map((n) => text(n))), { maxLength: 20 });
      const mutation = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 });
      fc.assert(
        fc.property(payloadsArb, mutation, (payloads, edits) => {
          const frame = codec.encode(payloads).slice();
          for (const [pos, value] of edits) frame[FRAME_HEADER_BYTES + (pos % Math.max(1, frame.byteLength - FRAME_HEADER_BYTES))] ^= value;
          if (frame.byteLength > FRAME_HEADER_BYTES) reseal(frame);
          decodeOrCodecError((f) => codec.decode(f), frame);
        }),
        { interruptAfterTimeLimit: FUZZ_MS, numRuns: 1e6 },
      );
    });

    it('fuzz: arbitrary payload arrays round-trip', () => {
      const codec = impl.make();
      const payload = fc.oneof(
        fc.uint8Array({ maxLength: 200 }),
        fc.tuple(fc.nat(3000), fc.nat(7)).map(([n, seed]) => text(n, seed)),
        fc.tuple(fc.nat(2000), fc.integer({ min: 0, max: 255 })).map(([n, b]) => new Uint8Array(n).fill(b)),
      );
      fc.assert(
        fc.property(fc.array(payload, { maxLength: 60 }), fc.boolean(), (payloads, compress) => {
          const c = compress ? codec : impl.make(false);
          assertPayloads(c.decode(c.encode(payloads)), payloads, 'fuzzed batch');
        }),
        { interruptAfterTimeLimit: FUZZ_MS, numRuns: 1e6 },
      );
    });
  });
}

function u32le(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

// ---------------------------------------------------------------------------------------------
// JS ⇄ native

describe('js and native codecs read each other', { skip: nativeSkip }, () => {
  const js = (compress = true) => createJsCodec({ compress });
  const native = (compress = true) => createNativeCodec({ compress }, binding);

  for (const [name, make] of Object.entries(batches)) {
    for (const compress of [true, false]) {
      it(`${name}${compress ? '' : ' (compression off)'}`, () => {
        const payloads = make();
        const fromJs = js(compress).encode(payloads);
        const fromNative = native(compress).encode(payloads);
        assertPayloads(native().decode(fromJs), payloads, 'js → native');
        assertPayloads(js().decode(fromNative), payloads, 'native → js');
        // The whole-frame addon entry points read and write the same frames.
        assertPayloads(binding!.decodeFrame(fromJs), payloads, 'js → decodeFrame');
        assertPayloads(js().decode(binding!.encodeFrame(payloads, compress)), payloads, 'encodeFrame → js');
        assert.equal(fromNative[5], fromJs[5], 'both compress the same batches');
        assert.equal(binding!.encodeFrame(payloads, compress)[5], fromJs[5]);
        // Raw frames are byte-identical; compressed ones differ only in the LZ4 encoder's choices.
        if (fromJs[5] === 0) {
          assert.ok(bytesEqual(fromNative, fromJs), 'raw frames identical');
          assert.ok(bytesEqual(binding!.encodeFrame(payloads, compress), fromJs), 'encodeFrame raw frame identical');
        }
      });
    }
  }

  it('agree on every mutated frame with a fixed checksum (differential fuzz)', () => {
    const payloadsArb = fc.array(fc.oneof(fc.uint8Array({ maxLength: 60 }), fc.nat(400).map((n) => text(n))), { maxLength: 12 });
    fc.assert(
      fc.property(payloadsArb, fc.boolean(), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 3 }), (payloads, useJs, edits) => {
        const frame = (useJs ? js() : native()).encode(payloads).slice();
        for (const [pos, value] of edits) frame[FRAME_HEADER_BYTES + (pos % Math.max(1, frame.byteLength - FRAME_HEADER_BYTES))] ^= value;
        if (frame.byteLength > FRAME_HEADER_BYTES) reseal(frame);
        const a = decodeOrCodecError((f) => js().decode(f), frame);
        const b = decodeOrCodecError((f) => native().decode(f), frame);
        const c = decodeOrCodecError((f) => binding!.decodeFrame(f), frame);
        if (frame[5] === 0) {
          // Raw bodies: the same bytes must get the same verdict from all three decoders.
          assert.equal(a === undefined, b === undefined, 'js and native agree on acceptance');
          assert.equal(b === undefined, c === undefined, 'native codec and decodeFrame agree on acceptance');
        }
        if (a && b) assertPayloads(b, a, 'same payloads');
        if (b && c) assertPayloads(c, b, 'same payloads (decodeFrame)');
      }),
      { interruptAfterTimeLimit: FUZZ_MS, numRuns: 1e6 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// The addon's own entry points

describe('native addon entry points', { skip: nativeSkip }, () => {
  it('reports its LZ4 and CRC implementations', () => {
    assert.match(binding!.lz4Version, /^\d+\.\d+\.\d+/);
    assert.ok(['sse4.2', 'table'].includes(binding!.crc32cImpl));
  });

  it('crc32c matches the JS implementation at every length and alignment', () => {
    const data = noise(5000, 3);
    for (let start = 0; start < 9; start++) {
      for (const len of [0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 64, 100, 1000, 4990]) {
        const view = data.subarray(start, start + len);
        assert.equal(binding!.crc32c(view), crc32c(view), `start ${start} len ${len}`);
        assert.equal(binding!.crc32c(view, 0xdeadbeef), crc32c(view, 0, view.byteLength, 0xdeadbeef));
      }
    }
    assert.equal(binding!.crc32c(Buffer.from('123456789')), 0xe3069283);
  });

  it('decodeFrame refuses truncations and bit flips with MG_ERR_CODEC', () => {
    for (const compress of [false, true]) {
      const frame = binding!.encodeFrame(Array.from({ length: 8 }, (_, i) => text(80, i)), compress);
      for (let len = 0; len < frame.byteLength; len++) assertCodecError(() => binding!.decodeFrame(frame.subarray(0, len)), `len ${len}`, false);
      for (let bit = 0; bit < frame.byteLength * 8; bit++) {
        const f = Buffer.from(frame);
        f[bit >> 3] ^= 1 << (bit & 7);
        assertCodecError(() => binding!.decodeFrame(f), `bit ${bit}`, false);
      }
    }
  });

  it('decodeFrame payloads are views, not copies, of one buffer', () => {
    const raw = binding!.encodeFrame([text(10), text(20)], false);
    const [a, b] = binding!.decodeFrame(raw);
    assert.equal(a.buffer, raw.buffer, 'raw body: views over the frame');
    const packed = binding!.encodeFrame([text(1000), text(2000)], true);
    const [c, d] = binding!.decodeFrame(packed);
    assert.equal(c.buffer, d.buffer, 'compressed body: views over one decompressed buffer');
    assert.ok(bytesEqual(b, text(20)) && bytesEqual(d, text(2000)));
  });

  it('decodeFrame hands out 200,000 payloads (chunked handle scopes)', () => {
    const payloads = Array.from({ length: 200_000 }, (_, i) => (i % 1000 === 0 ? text(5, i) : new Uint8Array(0)));
    for (const compress of [false, true]) assertPayloads(binding!.decodeFrame(binding!.encodeFrame(payloads, compress)), payloads, `200k (compress ${compress})`);
  });

  it('loads and works in a worker thread too', async () => {
    const path = nativeCandidatePaths().find((p) => existsSync(p))!;
    const source = `
      const { parentPort, workerData } = require('node:worker_threads');
      const addon = require(workerData);
      const frame = addon.encodeFrame([Buffer.from('hello'), Buffer.alloc(600, 1)], true);
      parentPort.postMessage(addon.decodeFrame(frame).map((p) => Buffer.from(p).toString('latin1').slice(0, 5)));
    `;
    const worker = new Worker(source, { eval: true, workerData: path });
    const [message] = (await once(worker, 'message')) as [string[]];
    await worker.terminate();
    assert.deepEqual(message, ['hello', '\x01\x01\x01\x01\x01']);
  });

  it('rejects wrong argument types with a code instead of crashing', () => {
    const bad: Array<[string, () => unknown]> = [
      ['encodeFrame(not an array)', () => binding!.encodeFrame('x' as never)],
      ['encodeFrame(array of strings)', () => binding!.encodeFrame(['x'] as never)],
      ['encodeFrame(compress not boolean)', () => binding!.encodeFrame([], 1 as never)],
      ['decodeFrame(string)', () => binding!.decodeFrame('MGF1' as never)],
      ['decodeFrame(Uint16Array)', () => binding!.decodeFrame(new Uint16Array(20) as never)],
      ['sealFrame(no room)', () => binding!.sealFrame(new Uint8Array(3), 0)],
      ['sealFrame(count disagrees with body)', () => binding!.sealFrame(new Uint8Array(28), 3)],
      ['openFrame(undefined)', () => binding!.openFrame(undefined as never)],
    ];
    for (const [what, fn] of bad) {
      assert.throws(fn, (err: { code?: string }) => err.code === 'MG_ERR_CODEC', what);
    }
    assert.throws(() => binding!.sdNotify(42 as never), (err: { code?: string }) => err.code === 'MG_ERR_NATIVE');
  });

  it('encodeFrame propagates an exception thrown while reading the payloads', () => {
    const payloads = [text(10)];
    Object.defineProperty(payloads, 1, { get: () => { throw new Error('getter threw'); }, enumerable: true });
    assert.throws(() => binding!.encodeFrame(payloads), /getter threw/);
  });
});

// ---------------------------------------------------------------------------------------------
// createCodec and loading

describe('createCodec', () => {
  it('picks native unless disabled, and JS when disabled', () => {
    assert.equal(createCodec({ native: false }).impl, 'js');
    const expected = nativeDisabledByEnv() || !binding ? 'js' : 'native';
    assert.equal(createCodec().impl, expected, `METAGUARD_NATIVE=${process.env.METAGUARD_NATIVE ?? '(unset)'}`);
    assert.equal(createCodec({ native: true }).impl, expected);
    assert.equal(nativeDisabledByEnv({ METAGUARD_NATIVE: '0' }), true);
    assert.equal(nativeDisabledByEnv({ METAGUARD_NATIVE: '1' }), false);
    assert.equal(nativeDisabledByEnv({}), false);
  });

  /** Runs a snippet in a fresh Node with `env` and returns its stdout JSON and stderr. */
  function child(code: string, env: Record<string, string | undefined>): { out: any; stderr: string } {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: packageRoot(),
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    return { out: JSON.parse(r.stdout.trim().split('\n').pop()!), stderr: r.stderr };
  }

  const probe = `
    import { createCodec } from './src/codec/index.ts';
    import { nativeLoadError } from './src/codec/native.ts';
    const warnings = [];
    process.on('warning', (w) => warnings.push({ code: w.code, message: w.message }));
    const impls = [createCodec().impl, createCodec().impl, createCodec({ compress: false }).impl];
    const codec = createCodec();
    const ok = codec.decode(codec.encode([new Uint8Array([1, 2, 3])]))[0].length === 3;
    await new Promise((r) => setImmediate(r));
    const err = nativeLoadError();
    console.log(JSON.stringify({ impls, ok, warnings, cause: err?.cause?.errors?.map((e) => e.message) }));
  `;

  it('falls back to JS with one explained MG_NATIVE_UNAVAILABLE warning when the binary is missing', () => {
    const missing = join(tmpdir(), 'metaguard-no-such-dir', 'metaguard.node');
    const { out } = child(probe, { [NATIVE_PATH_ENV]: missing, METAGUARD_NATIVE: undefined });
    assert.deepEqual(out.impls, ['js', 'js', 'js']);
    assert.equal(out.ok, true);
    assert.equal(out.warnings.length, 1, JSON.stringify(out.warnings));
    assert.equal(out.warnings[0].code, 'MG_NATIVE_UNAVAILABLE');
    assert.match(out.warnings[0].message, /not found/);
    assert.ok(out.warnings[0].message.includes(missing), out.warnings[0].message);
    assert.match(out.warnings[0].message, new RegExp(NATIVE_PATH_ENV));
    assert.deepEqual(out.cause, [`${missing}: not found`]);
  });

  it('explains a binary that exists but does not load', () => {
    const dir = mkdtempSync(join(tmpdir(), 'metaguard-native-'));
    try {
      const bogus = join(dir, 'metaguard.linux-x64-gnu.node');
      writeFileSync(bogus, 'not an ELF file');
      const { out } = child(probe, { [NATIVE_PATH_ENV]: bogus, METAGUARD_NATIVE: undefined });
      assert.deepEqual(out.impls, ['js', 'js', 'js']);
      assert.equal(out.warnings.length, 1);
      assert.match(out.warnings[0].message, /failed to load/);
      assert.ok(out.warnings[0].message.includes(bogus));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('does not even try to load the binary when METAGUARD_NATIVE=0', () => {
    const { out } = child(probe, { [NATIVE_PATH_ENV]: '/nonexistent/metaguard.node', METAGUARD_NATIVE: '0' });
    assert.deepEqual(out.impls, ['js', 'js', 'js']);
    assert.deepEqual(out.warnings, []);
  });

  it('loads the binary named by METAGUARD_NATIVE_PATH', { skip: nativeSkip }, () => {
    const built = nativeCandidatePaths().find((p) => existsSync(p))!;
    const { out } = child(probe, { [NATIVE_PATH_ENV]: built, METAGUARD_NATIVE: undefined });
    assert.deepEqual(out.impls, ['native', 'native', 'native']);
    assert.deepEqual(out.warnings, []);
  });
});

// ---------------------------------------------------------------------------------------------
// sd_notify

const python = spawnSync('python3', ['-c', 'import socket; socket.AF_UNIX'], { encoding: 'utf8' });
const pythonSkip = python.status === 0 ? false : 'python3 (to bind an AF_UNIX datagram socket) is not available';

/** Binds a datagram socket at `address` ('@name' = abstract) in python3 and resolves to the first datagram received. */
async function receiveDatagram(address: string): Promise<{ ready: Promise<void>; message: Promise<string> }> {
  const script = `
import socket, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + addr[1:] if addr.startswith('@') else addr)
s.settimeout(20)
print('ready', flush=True)
sys.stdout.write(s.recv(65536).hex() + '\\n')
`;
  const proc = spawn('python3', ['-c', script, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let onReady: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (chunk: string) => {
    out += chunk;
    if (out.startsWith('ready\n')) onReady();
  });
  const message = new Promise<string>((resolve, reject) => {
    proc.on('error', reject);
    proc.on('exit', (code) => {
      const hex = out.split('\n')[1] ?? '';
      if (code === 0) resolve(Buffer.from(hex, 'hex').toString('utf8'));
      else reject(new Error(`receiver exited ${code}: ${out}`));
    });
  });
  return { ready, message };
}

describe('sdNotify', { skip: nativeSkip || pythonSkip }, () => {
  async function withNotifySocket<T>(value: string | undefined, fn: () => Promise<T> | T): Promise<T> {
    const saved = process.env.NOTIFY_SOCKET;
    if (value === undefined) delete process.env.NOTIFY_SOCKET;
    else process.env.NOTIFY_SOCKET = value;
    try {
      return await fn();
    } finally {
      if (saved === undefined) delete process.env.NOTIFY_SOCKET;
      else process.env.NOTIFY_SOCKET = saved;
    }
  }

  it('returns false when NOTIFY_SOCKET is unset or empty', async () => {
    await withNotifySocket(undefined, () => assert.equal(sdNotify('READY=1'), false));
    await withNotifySocket('', () => assert.equal(sdNotify('READY=1'), false));
  });

  it('sends a datagram to a socket path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'metaguard-notify-'));
    try {
      const path = join(dir, 'notify.sock');
      const { ready, message } = await receiveDatagram(path);
      await ready;
      await withNotifySocket(path, () => assert.equal(sdNotify('READY=1\nSTATUS=x'), true));
      assert.equal(await message, 'READY=1\nSTATUS=x');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sends a datagram to an abstract socket (@name)', async () => {
    const name = `@metaguard-test-${process.pid}-${Date.now()}`;
    const { ready, message } = await receiveDatagram(name);
    await ready;
    const status = 'STATUS=draining ünïcode ✓';
    await withNotifySocket(name, () => assert.equal(sdNotify(`WATCHDOG=1\n${status}`), true));
    assert.equal(await message, `WATCHDOG=1\n${status}`);
  });

  it('throws MG_ERR_NATIVE when nobody listens or the address is malformed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'metaguard-notify-'));
    try {
      await withNotifySocket(join(dir, 'nobody.sock'), () =>
        assert.throws(() => sdNotify('READY=1'), (err: { code?: string; syscall?: string; errno?: number }) => {
          return err.code === 'MG_ERR_NATIVE' && err.syscall === 'sendto' && typeof err.errno === 'number' && err.errno < 0;
        }),
      );
      await withNotifySocket('relative/notify.sock', () => assert.throws(() => sdNotify('READY=1'), { code: 'MG_ERR_NATIVE' }));
      await withNotifySocket('/' + 'x'.repeat(200), () => assert.throws(() => sdNotify('READY=1'), { code: 'MG_ERR_NATIVE' }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('unpackCase: a case payload read without its record definition', () => {
  const value = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      fc.jsonValue({ maxDepth: 2 }),
      fc.constant(undefined),
      fc.double(),
      fc.bigInt(),
      fc.date({ noInvalidDate: true }),
      fc.array(tie('v'), { maxLength: 4 }),
      // Objects with the case record's own keys: a nested reference to its record slot.
      fc.record({ index: tie('v'), args: tie('v') }),
      fc.record({ args: tie('v'), index: tie('v') }),
      fc.dictionary(fc.string({ maxLength: 5 }), tie('v'), { maxKeys: 3 }),
      fc.array(fc.tuple(fc.integer(), tie('v')), { maxLength: 3 }).map((kv) => new Map(kv)),
    ),
  })).v;

  it('gives what unpack gives for any case, whatever its index and arguments, and whatever it read before', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.oneof(fc.nat(), fc.integer({ min: 0, max: 2 ** 32 - 1 })), fc.array(value, { maxLength: 5 })), { minLength: 1, maxLength: 4 }), (cases) => {
        // One after another through the same decoder: no payload may change how the next one reads.
        for (const [index, args] of cases) {
          const bytes = pack({ index, args });
          assert.deepStrictEqual(unpackCase(bytes), unpack(bytes));
          const listed = packCaseList([args]);
          assert.deepStrictEqual(unpackCase(listed.bytes), unpack(listed.bytes));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a payload that redefines the case record (past 63 other object shapes, or forged) does not change the next one', () => {
    const next = pack({ index: 1, args: [{ index: 5, args: [1, 2] }] });
    const shapes = pack({ index: 0, args: [Array.from({ length: 63 }, (_, i) => ({ [`k${i}`]: i })), { x: 1, y: 2 }] });
    assert.deepStrictEqual(unpackCase(shapes), unpack(shapes));
    assert.deepStrictEqual(unpackCase(next), unpack(next));
    // Forged: args redefines slot 0x40 with the keys swapped, and the payload ends early (both throw).
    const prefix = next.subarray(0, next.indexOf(0x91, 15));
    const forged = Uint8Array.from([...prefix, 0x91, 0xd4, 0x72, 0x40, 0x92, 0xa4, ...Buffer.from('args'), 0xa5, ...Buffer.from('index')]);
    assert.throws(() => unpackCase(forged), (err: Error & { code?: string }) => err.code === 'MG_ERR_CODEC');
    assert.deepStrictEqual(unpackCase(next), { index: 1, args: [{ index: 5, args: [1, 2] }] });
  });

  it('leaves anything else to unpack: other values, other layouts, bytes cut short or followed by more', () => {
    for (const v of [7, 'x', null, [1, 2], { index: -1, args: [] }, { index: 1.5, args: [] }, { args: [], index: 3 }, { index: 1, args: [], more: 1 }, { index: 1 }]) {
      const bytes = pack(v);
      assert.deepStrictEqual(unpackCase(bytes), unpack(bytes), JSON.stringify(v));
    }
    // An index byte of 0x40 is a reference to the record just defined, not 64.
    const at64 = pack({ index: 5, args: [5] });
    at64[15] = 0x40;
    assert.throws(() => unpack(at64));
    assert.throws(() => unpackCase(at64));
    const bytes = pack({ index: 300, args: [[1, 2]] });
    for (const bad of [bytes.subarray(0, bytes.length - 1), Uint8Array.from([...bytes, 0x01]), bytes.subarray(0, 16)]) {
      assert.throws(() => unpackCase(bad), (err: Error & { code?: string }) => err.code === 'MG_ERR_CODEC');
    }
  });
});

describe('packCaseList: the quick writer writes what msgpackr writes', () => {
  /** Case i of a packed list: its own bytes. */
  const caseBytes = (list: { bytes: Uint8Array; ends: Uint32Array }, i: number) => list.bytes.subarray(i === 0 ? 0 : list.ends[i - 1], list.ends[i]);
  const edges = [0, 1, 0x1f, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53];
  const numbers = [...edges, ...edges.map((x) => -x), -0x21, -0x81, -0x8001, -(2 ** 31) - 1, 0.5, -0.5, 1e-300, NaN, Infinity, -Infinity, -0, Number.MIN_VALUE, Number.MAX_VALUE];
  const ascii = (n: number) => 'abcdefghij'.repeat(Math.ceil(n / 10)).slice(0, n);
  const leaf = fc.oneof(
    fc.constantFrom(...numbers),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'grapheme', maxLength: 8 }),
    fc.constantFrom(0, 0x1f, 0x20, 0x3f, 0x40, 0xff, 0x100, 0x10000).map(ascii),
    fc.constant({ a: 1 }),
    fc.constant(new Uint8Array([1, 2])),
  );
  const args = fc.letrec((tie) => ({
    v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 20 })),
  })).v;

  it('byte for byte, for generated argument lists of every shape (the quick ones and the others)', () => {
    fc.assert(
      fc.property(fc.array(fc.array(args, { maxLength: 4 }), { minLength: 1, maxLength: 8 }), (cases) => {
        const list = packCaseList(cases);
        assert.equal(list.ends.length, cases.length);
        for (let i = 0; i < cases.length; i++) assert.deepStrictEqual(Buffer.from(caseBytes(list, i)), Buffer.from(pack({ index: i, args: cases[i] })), `case ${i}`);
      }),
      { numRuns: 400 },
    );
  });

  it('byte for byte at every index width, for long arrays, shared arrays, holes and deep nesting', () => {
    const shared = [1, 2, 3];
    const deep: unknown[] = [1];
    let at = deep;
    for (let d = 0; d < 12; d++) at = (at[0] = [d]) as unknown[];
    const holey = [1, , 3]; // eslint-disable-line no-sparse-arrays
    const special: unknown[][] = [[Array.from({ length: 16 }, (_, i) => i)], [Array.from({ length: 0x10000 }, (_, i) => i - 500)], [shared, shared], [[shared], shared], [deep], [holey], [ascii(0x10000)], ['é'], [[], [[]]]];
    const cases: unknown[][] = Array.from({ length: 0x10000 + 300 }, (_, i) => (i % 1000 < special.length ? special[i % 1000] : [[i, -i, i / 3, 'x'.repeat(i % 40)]]));
    const list = packCaseList(cases);
    for (let i = 0; i < cases.length; i++) if (i < 70 || i % 97 === 0 || i % 1000 < special.length || i > 0x10000 - 3) assert.deepStrictEqual(Buffer.from(caseBytes(list, i)), Buffer.from(pack({ index: i, args: cases[i] })), `case ${i}`);
    assert.deepStrictEqual(unpackCase(caseBytes(list, 0x10000 + 5)), { index: 0x10000 + 5, args: cases[0x10000 + 5] });
  });

  it('takes an array as msgpackr does (by its constructor), and names the case whatever a getter or a proxy throws', () => {
    const renamed = Object.assign([1, 2], { constructor: Object });
    const mapped = Object.assign([1, 2], { constructor: Map });
    const proxied = new Proxy([1, 2], { get: (t, k) => (k === 'constructor' ? Object : t[k as unknown as number]) });
    assert.deepStrictEqual(Buffer.from(packCaseList([[proxied]]).bytes), Buffer.from(pack({ index: 0, args: [proxied] })));
    const throwing = Object.defineProperty([1, 2], 0, { get: () => { throw new Error('boom'); } });
    const { proxy: revoked, revoke } = Proxy.revocable([1], {});
    revoke();
    const trap = new Proxy([1], { get: () => { throw new Error('trap'); } });
    for (const bad of [renamed, mapped, throwing, revoked, trap]) {
      assert.throws(
        () => packCaseList([[1], [bad]]),
        (err: Error & { code?: string }) => err.code === 'MG_ERR_TASK_GEN' && /^case 1 /.test(err.message),
      );
      assert.throws(() => packCaseList([[1], bad as unknown[]]), (err: Error & { code?: string }) => err.code === 'MG_ERR_TASK_GEN');
    }
  });

  it('refuses a function as an argument, naming the case, in either path', () => {
    for (const bad of [[() => 1], [[1, 2, () => 1]]]) {
      assert.throws(
        () => packCaseList([[1], bad]),
        (err: Error & { code?: string }) => err.code === 'MG_ERR_TASK_GEN' && /case 1 /.test(err.message),
      );
    }
  });
});

describe('PackedCases: the gen thread\'s bytes as a job\'s cases', () => {
  const cases = [[[3, 1, 2]], [[]], [['a', 'bc']], [[-1, 0.5]], [[1, [2, 3]]]];
  const list = packCaseList(cases);

  it('slices payloads like an array of them (views made per slice), and decodes each case once asked', () => {
    const packed = new PackedCases(list.bytes, list.ends, cases.length);
    assert.equal(packed.length, 5);
    assert.equal(packed.payloads.length, 5);
    const all = packed.payloads.slice(0, 5);
    assert.equal(all.length, 5);
    for (let i = 0; i < 5; i++) assert.deepStrictEqual(Buffer.from(all[i]), Buffer.from(pack({ index: i, args: cases[i] })), `case ${i}`);
    // Views into the one buffer, not copies.
    assert.equal(all[2].buffer, list.bytes.buffer);
    assert.deepStrictEqual(packed.payloads.slice(1, 3).map((p) => Buffer.from(p)), all.slice(1, 3).map((p) => Buffer.from(p)));
    assert.deepStrictEqual(packed.payloads.slice(3).map((p) => Buffer.from(p)), all.slice(3).map((p) => Buffer.from(p)));
    // Bounds past either end are clamped, as Array.prototype.slice does.
    assert.equal(packed.payloads.slice(4, 99).length, 1);
    assert.equal(packed.payloads.slice(7, 9).length, 0);
    assert.equal(packed.payloads.slice(3, 1).length, 0);
    for (let i = 0; i < 5; i++) assert.deepStrictEqual(packed.at(i), cases[i]);
    assert.equal(packed.at(5), undefined);
    assert.equal(packed.at(-1), undefined);
  });

  it('refuses a layout whose ends do not rise to the last byte, and a case whose bytes name another index', () => {
    const refused = (bytes: Uint8Array, ends: Uint32Array, n: number) =>
      assert.throws(() => new PackedCases(bytes, ends, n), (err: Error & { code?: string }) => err.code === 'MG_ERR_CODEC');
    refused(list.bytes, list.ends, 4);
    refused(list.bytes, list.ends.slice(0, 4), 4);
    const falling = list.ends.slice();
    [falling[1], falling[2]] = [falling[2], falling[1]];
    refused(list.bytes, falling, 5);
    // Case 1's bytes where case 0's should be: decoding case 0 finds index 1.
    const swapped = packCaseList([[1], [2]]);
    const other = new Uint8Array(swapped.bytes.byteLength);
    other.set(swapped.bytes.subarray(swapped.ends[0]), 0);
    other.set(swapped.bytes.subarray(0, swapped.ends[0]), swapped.bytes.byteLength - swapped.ends[0]);
    const bad = new PackedCases(other, new Uint32Array([swapped.bytes.byteLength - swapped.ends[0], swapped.bytes.byteLength]), 2);
    assert.throws(() => bad.at(0), (err: Error & { code?: string }) => err.code === 'MG_ERR_CODEC' && /case 0/.test(err.message));
  });
});

describe('unpackCase: the quick reader reads what msgpackr reads', () => {
  const quickValue = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      fc.integer(),
      fc.integer({ min: -0x8000, max: 0xffff }),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.string({ maxLength: 40 }),
      fc.string({ unit: 'grapheme', maxLength: 6 }),
      fc.array(tie('v'), { maxLength: 20 }),
    ),
  })).v;
  /** unpack's value, or its error code, for any bytes. */
  const outcome = (read: () => unknown) => {
    try {
      return { value: read() };
    } catch (err) {
      return { code: (err as { code?: string }).code };
    }
  };

  it('gives unpack\'s value for generated cases, and for the same bytes cut, extended or with a byte changed', () => {
    fc.assert(
      fc.property(fc.array(quickValue, { maxLength: 4 }), fc.nat({ max: 0x20000 }), fc.nat(), fc.nat({ max: 255 }), (args, index, at, byte) => {
        const bytes = pack({ index, args });
        assert.deepStrictEqual(unpackCase(bytes), unpack(bytes));
        const i = at % bytes.length;
        const changed = Uint8Array.from(bytes);
        changed[i] = byte;
        for (const m of [changed, bytes.subarray(0, i), Uint8Array.from([...bytes, byte])]) {
          const expected = outcome(() => unpack(m));
          const got = outcome(() => unpackCase(m));
          if ('code' in expected) assert.deepStrictEqual(got, { code: 'MG_ERR_CODEC' });
          else assert.deepStrictEqual(got, expected);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('quickCaseIndex: an index only where unpackCase reads a case whose args are an array, and that index', () => {
    let found = 0;
    fc.assert(
      fc.property(fc.array(quickValue, { maxLength: 4 }), fc.nat({ max: 0x20000 }), fc.nat(), fc.nat({ max: 255 }), (args, index, at, byte) => {
        const bytes = pack({ index, args });
        const i = at % bytes.length;
        const changed = Uint8Array.from(bytes);
        changed[i] = byte;
        for (const m of [bytes, changed, bytes.subarray(0, i), Uint8Array.from([...bytes, byte])]) {
          let got: number | undefined;
          try {
            got = quickCaseIndex(m);
          } catch (err) {
            // Refused by the scan: refused by unpackCase too, with the same code.
            assert.equal((err as { code?: string }).code, 'MG_ERR_CODEC');
            assert.throws(() => unpackCase(m), (e: Error & { code?: string }) => e.code === 'MG_ERR_CODEC');
            continue;
          }
          if (got === undefined) continue;
          found++;
          const c = unpackCase(m) as { index: unknown; args: unknown };
          assert.equal(c.index, got);
          assert.ok(Array.isArray(c.args));
        }
      }),
      { numRuns: 2000 },
    );
    // Not vacuous: most generated cases are in the quick layout.
    assert.ok(found > 1000, `${found} payloads had a quick index`);
    assert.equal(quickCaseIndex(pack({ index: 70_000, args: [[-1000, 0, 999, 65_535], 'ab', null, true, 1.5] })), 70_000);
    // Arguments that are not an array, a map, a long string: left to unpackCase.
    assert.equal(quickCaseIndex(pack({ index: 1, args: 5 })), undefined);
    assert.equal(quickCaseIndex(pack({ index: 1, args: [new Map([[1, 2]])] })), undefined);
    assert.equal(quickCaseIndex(pack({ index: 1, args: ['x'.repeat(13)] })), undefined);
  });

  it('decodeCasesWithPayloads without args: the same cases and payloads, empty args, and bad cases refused alike', () => {
    const codec = createJsCodec();
    const cases = [
      { index: 0, args: [[3, 1, 2]] },
      { index: 7, args: [new Map([['k', 1]])] },
      { index: 9, args: ['a much longer string than twelve characters'] },
    ];
    const frame = encodeCases(codec, cases);
    const full = decodeCasesWithPayloads(codec, frame);
    const bare = decodeCasesWithPayloads(codec, frame, { args: false });
    assert.deepStrictEqual(full.cases, cases);
    assert.deepStrictEqual(bare.cases.map((c) => c.index), [0, 7, 9]);
    // The usual layout goes without its arguments; the others were decoded to be checked.
    assert.deepStrictEqual(bare.cases[0].args, []);
    assert.ok(Object.isFrozen(bare.cases[0].args));
    assert.deepStrictEqual(bare.payloads.map((p) => Buffer.from(p).toString('hex')), full.payloads.map((p) => Buffer.from(p).toString('hex')));
    // A case whose args are not an array, and bytes that are not a case: MG_ERR_CODEC either way.
    for (const bad of [codec.encode([pack({ index: 1, args: 5 })]), codec.encode([Uint8Array.from([0xc1])]), codec.encode([pack({ index: -1, args: [] })])]) {
      for (const args of [true, false]) {
        assert.throws(() => decodeCasesWithPayloads(codec, bad, { args }), (err: Error & { code?: string }) => err.code === 'MG_ERR_CODEC', `args: ${args}`);
      }
    }
  });

  /** Runs `body` (source of an async function of `unpackCase` and `prefix`) in a thread with a small heap: its answer, or the thread's error code. */
  const inSmallHeap = async (body: string, maxOldMb: number): Promise<unknown> => {
    const worker = new Worker(new URL('./fixtures/codec/small-heap.ts', import.meta.url), { workerData: { body }, resourceLimits: { maxOldGenerationSizeMb: maxOldMb } });
    try {
      return await new Promise((resolve) => {
        worker.once('message', resolve);
        worker.once('error', (err: Error & { code?: string }) => resolve({ threadError: err.code ?? err.message }));
      });
    } finally {
      await worker.terminate();
    }
  };

  it('reads strings flat: 4 MiB of long strings decode within a 48 MiB heap, twice', async () => {
    const answer = await inSmallHeap(
      `async (unpackCase, prefix) => {
        const s = Buffer.alloc(4096, 0x61);
        const one = Buffer.concat([Buffer.from([0xda, 0x10, 0x00]), s]);
        const bytes = Buffer.concat([prefix, Buffer.from([0x00, 0x91, 0xdc, 0x04, 0x00]), ...Array(1024).fill(one)]);
        const kept = [unpackCase(bytes), unpackCase(bytes)];
        return kept.every((c) => c.args[0].length === 1024 && c.args[0].every((x) => x.length === 4096 && x[4095] === 'a'));
      }`,
      48,
    );
    assert.equal(answer, true);
  });

  it('charges nested arrays\' claimed lengths against one budget: nine nested claims of 2,000,000 fit a 64 MiB heap', async () => {
    const answer = await inSmallHeap(
      `async (unpackCase, prefix) => {
        const n = 2_000_000;
        const header = [0xdd, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
        const bytes = Buffer.concat([prefix, Buffer.from([0x00]), Buffer.from(Array(9).fill(header).flat()), Buffer.alloc(n + 10, 0xc1)]);
        try { unpackCase(bytes); return 'decoded'; } catch (err) { return err.code; }
      }`,
      64,
    );
    assert.equal(answer, 'MG_ERR_CODEC');
  });

  it('refuses a value followed by stray bytes without handing it to msgpackr (which writes the value out as JSON for its message)', async () => {
    const stray = Uint8Array.from([...pack({ index: 4, args: [[1, 2, 3], 'ab'] }), 0xc1]);
    assert.throws(() => unpackCase(stray, 'case 4'), (err: Error & { code?: string }) => err.code === 'MG_ERR_CODEC' && /case 4: .*1 bytes left over/.test(err.message));
    assert.throws(() => quickCaseIndex(stray, 'case 4'), (err: Error & { code?: string }) => err.code === 'MG_ERR_CODEC' && /case 4: .*1 bytes left over/.test(err.message));
    // A forged payload of 8 million empty arrays and a stray byte: the scan refuses it in a 32 MiB
    // heap, where decoding it (and msgpackr's JSON of it) could not fit.
    const answer = await inSmallHeap(
      `async (unpackCase, prefix, quickCaseIndex) => {
        const n = 8_000_000;
        const bytes = Buffer.concat([prefix, Buffer.from([0x00, 0x91, 0xdd, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]), Buffer.alloc(n, 0x90), Buffer.from([0xc1])]);
        try { return quickCaseIndex(bytes); } catch (err) { return err.code; }
      }`,
      32,
    );
    assert.equal(answer, 'MG_ERR_CODEC');
  });

  it('refuses an array that claims more elements than there are bytes left, with MG_ERR_CODEC', () => {
    const bytes = pack({ index: 3, args: [[1, 2, 3]] });
    // args: [ array32 of 2^32-1 elements ] with three bytes behind it.
    const at = bytes.indexOf(0x91);
    const forged = Uint8Array.from([...bytes.subarray(0, at), 0x91, 0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    assert.throws(() => unpackCase(forged), (err: Error & { code?: string }) => err.code === 'MG_ERR_CODEC');
  });
});
