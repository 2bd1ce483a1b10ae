/**
 * Codec speed: native vs JS in the same run, on realistic batches (1,000 cases, each payload a
 * serialized `{ index, args: [20 ints, int] }`, ~90 bytes). Reports operations per second and raw
 * body MB/s for encode and decode, the frame size after compression, and the native/JS speed-up on
 * encode+decode. `metaguard bench` reuses `runCodecBench`.
 *
 * Rates are 1000 / mean latency in ms, so the garbage collection an implementation causes counts
 * against it (a median would hide the JS codec's GC tail: p50 ~320 µs but mean ~1 ms per encode),
 * taken from the best of several rounds over all tasks (native and JS interleaved, so a burst of
 * load elsewhere on the machine hits one round, not one implementation).
 *
 * Run: node --import tsx bench/codec.ts [--json] [--time-ms N] [--rounds N] [--batch N], or `metaguard bench`.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { Bench } from 'tinybench';
import { createJsCodec } from '../codec/js.js';
import { createNativeCodec, nativeLoadError, tryLoadNativeBinding } from '../codec/native.js';
import { pack } from '../codec/serialize.js';
import type { Codec } from '../codec/types.js';

export interface CodecBenchRow {
  impl: 'native' | 'js';
  /** encode / decode through the Codec; with `detail`, also the uncompressed variants and the addon's whole-frame calls. */
  op: string;
  ops_per_sec: number;
  /** Raw body bytes (Σ 4 + payload length) processed per second. */
  bytes_per_sec: number;
  batch_size: number;
  raw_bytes: number;
  frame_bytes: number;
  /** Relative margin of error of the latency samples, in percent. */
  rme_percent: number;
}

export interface CodecBenchOptions {
  /** Payloads per batch. @defaultValue 1000 */
  batchSize?: number;
  /** Measuring time per task in milliseconds, split over the rounds (plus warm-up). @defaultValue 1500 */
  timeMs?: number;
  /** Rounds over all tasks; each task reports its best round. @defaultValue 3 */
  rounds?: number;
  /** Also measure uncompressed frames and the addon's whole-frame entry points. @defaultValue false */
  detail?: boolean;
}

/**
 * A full garbage collection, so each task starts from a clean heap instead of paying for the
 * garbage the previous task left (the order of tasks would otherwise decide part of the result).
 * `--expose-gc` set at run time, the usual trick, so `metaguard bench` needs no Node flag.
 */
const collectGarbage: () => void = (() => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as (() => void) | undefined;
  return typeof gc === 'function' ? gc : () => {};
})();

/** A batch of case-like payloads, deterministic in `seed`. */
export function makeCaseBatch(size: number, seed = 42): Uint8Array[] {
  let state = seed >>> 0 || 1;
  const next = (): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x1_0000_0000;
  };
  return Array.from({ length: size }, (_, index) =>
    pack({ index, args: [Array.from({ length: 20 }, () => Math.floor(next() * 1000)), Math.floor(next() * 100)] }),
  );
}

interface Subject {
  impl: 'native' | 'js';
  op: string;
  frameBytes: number;
  fn: () => unknown;
}

function subjects(batch: Uint8Array[], detail: boolean): { list: Subject[]; nativeError?: string } {
  const list: Subject[] = [];
  const binding = tryLoadNativeBinding();
  const codecs: Array<[Codec, boolean]> = [[createJsCodec({ compress: true }), true]];
  if (detail) codecs.push([createJsCodec({ compress: false }), false]);
  if (binding) {
    codecs.push([createNativeCodec({ compress: true }, binding), true]);
    if (detail) codecs.push([createNativeCodec({ compress: false }, binding), false]);
  }
  for (const [codec, compress] of codecs) {
    const frame = codec.encode(batch);
    const suffix = compress ? '' : ' (no lz4)';
    list.push({ impl: codec.impl, op: `encode${suffix}`, frameBytes: frame.byteLength, fn: () => codec.encode(batch) });
    list.push({ impl: codec.impl, op: `decode${suffix}`, frameBytes: frame.byteLength, fn: () => codec.decode(frame) });
  }
  if (binding && detail) {
    const frame = binding.encodeFrame(batch, true);
    list.push({ impl: 'native', op: 'addon encodeFrame', frameBytes: frame.byteLength, fn: () => binding.encodeFrame(batch, true) });
    list.push({ impl: 'native', op: 'addon decodeFrame', frameBytes: frame.byteLength, fn: () => binding.decodeFrame(frame) });
  }
  return { list, nativeError: binding ? undefined : nativeLoadError()?.message };
}

/** Measures the codecs; native rows are missing when the addon does not load. */
export async function runCodecBench(options: CodecBenchOptions = {}): Promise<CodecBenchRow[]> {
  const batchSize = options.batchSize ?? 1000;
  const batch = makeCaseBatch(batchSize);
  const rawBytes = batch.reduce((sum, p) => sum + 4 + p.byteLength, 0);
  const { list } = subjects(batch, options.detail ?? false);
  const rounds = Math.max(1, options.rounds ?? 3);
  const best: Array<{ period: number; rme: number }> = list.map(() => ({ period: Infinity, rme: 0 }));
  for (let round = 0; round < rounds; round++) {
    const bench = new Bench({ time: (options.timeMs ?? 1500) / rounds, warmupTime: round === 0 ? 200 : 50 });
    for (const s of list) bench.add(`${s.impl} ${s.op}`, s.fn, { beforeAll: collectGarbage });
    await bench.run();
    bench.tasks.forEach((task, i) => {
      const result = task.result as { period?: number; latency?: { rme: number }; error?: Error };
      if (result.period === undefined || !result.latency) throw new Error(`bench ${task.name} failed: ${result.error?.message ?? 'no result'}`);
      if (result.period < best[i].period) best[i] = { period: result.period, rme: result.latency.rme };
    });
  }
  return list.map((s, i): CodecBenchRow => {
    const opsPerSec = 1000 / best[i].period;
    return {
      impl: s.impl,
      op: s.op,
      ops_per_sec: opsPerSec,
      bytes_per_sec: opsPerSec * rawBytes,
      batch_size: batchSize,
      raw_bytes: rawBytes,
      frame_bytes: s.frameBytes,
      rme_percent: best[i].rme,
    };
  });
}

/** How many times faster native is than JS on `encode` then `decode` of one batch (undefined without native rows). */
export function codecSpeedup(rows: CodecBenchRow[], suffix = ''): number | undefined {
  const seconds = (impl: string): number | undefined => {
    const enc = rows.find((r) => r.impl === impl && r.op === `encode${suffix}`);
    const dec = rows.find((r) => r.impl === impl && r.op === `decode${suffix}`);
    return enc && dec ? 1 / enc.ops_per_sec + 1 / dec.ops_per_sec : undefined;
  };
  const js = seconds('js');
  const native = seconds('native');
  return js !== undefined && native !== undefined ? js / native : undefined;
}

/** The rows as an aligned text table. */
export function formatCodecBench(rows: CodecBenchRow[]): string {
  const header = ['impl', 'op', 'ops/s', 'MB/s', 'µs/op', '±%', 'frame bytes', 'of raw'];
  const body = rows.map((r) => [
    r.impl,
    r.op,
    r.ops_per_sec.toFixed(0),
    (r.bytes_per_sec / 1e6).toFixed(1),
    (1e6 / r.ops_per_sec).toFixed(1),
    r.rme_percent.toFixed(1),
    String(r.frame_bytes),
    `${((100 * r.frame_bytes) / r.raw_bytes).toFixed(1)}%`,
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((row) => row[c].length)));
  const line = (cells: string[]): string => cells.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

