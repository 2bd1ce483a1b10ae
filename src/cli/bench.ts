/**
 * `metaguard bench`: codec speed (native vs JS, on 1,000-case batches) and the end-to-end batch-size
 * sweep against the configured backend (memory by default), ending with the line to paste into the
 * environment file: METAGUARD_BATCH_SIZE=<n>.
 */
import { codecSpeedup, formatCodecBench, runCodecBench, type CodecBenchRow } from '../bench/codec.js';
import { batchSizeSweep, type SweepRow } from '../bench/sweep.js';
import { invalidOption } from '../errors.js';
import { describeOptions, resolveOptions } from '../options/schema.js';
import { benchSchema } from '../options/bench.js';
import { resolveQueueConfig } from '../options/queue.js';
import { parseFlags as parseFlagsOnly } from './args.js';

const help = `Usage: metaguard bench [options]

Measures the batch codec (native vs JS, encode and decode of 1,000-case batches) and the end-to-end
throughput of an evaluation for a sweep of batch sizes against the configured backend, then prints
the recommended batch size as METAGUARD_BATCH_SIZE=<n>. Against Redis or Kafka, start workers with
the same queue config first.

Options:
${describeOptions(benchSchema)}`;

function parseSizes(text: string): number[] {
  const sizes = text.split(',').map((s) => Number(s.trim()));
  if (sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 100_000)) {
    throw invalidOption('--sizes', `must be comma-separated integers in 1..100000, got ${JSON.stringify(text)}`);
  }
  return [...new Set(sizes)].sort((a, b) => a - b);
}

export async function benchCommand(argv: string[]): Promise<number> {
  const { flags, help: wantHelp } = parseFlagsOnly(argv, benchSchema);
  if (wantHelp) {
    process.stdout.write(help + '\n');
    return 0;
  }
  const options = resolveOptions(benchSchema, { flags, env: process.env });
  const sizes = parseSizes(options.sizes);
  const queueConfig = (options.queueConfig ?? { backend: 'memory' }) as Record<string, unknown>;
  const config = resolveQueueConfig(queueConfig, {});
  const say = (line: string) => {
    if (!options.json) process.stdout.write(line + '\n');
  };

  let codec: CodecBenchRow[] = [];
  if (!options.skipCodec) {
    say('codec: encode and decode of 1,000-case batches (tinybench)');
    codec = await runCodecBench({ timeMs: options.codecTimeMs });
    say(formatCodecBench(codec));
    const speedup = codecSpeedup(codec);
    say(speedup === undefined ? 'native codec unavailable: JS only' : `native/js on encode+decode: ${speedup.toFixed(2)}x`);
    say('');
  }
  let sweep: SweepRow[] = [];
  let recommended: number | null = null;
  if (!options.skipSweep) {
    say(`sweep: ${options.n} cases per role per batch size, backend ${config.backend}${config.backend === 'memory' ? ` (${options.workers} in-process workers)` : ''}`);
    say('  batch_size   cases/s');
    const result = await batchSizeSweep({
      queueConfig,
      sizes,
      n: options.n,
      localWorkers: options.workers,
      onRow: (row) => say(`  ${String(row.batch_size).padStart(10)}   ${String(row.cases_per_sec).padStart(7)}`),
    });
    sweep = result.sweep;
    recommended = result.recommended_batch_size;
  }
  if (options.json) {
    const out = {
      codec: codec.map((r) => ({ impl: r.impl, op: r.op, ops_per_sec: Math.round(r.ops_per_sec), bytes_per_sec: Math.round(r.bytes_per_sec) })),
      sweep,
      recommended_batch_size: recommended,
    };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } else if (recommended !== null) {
    say('');
    say('# the smallest batch size within 5% of the best throughput; paste into the environment file:');
    say(`METAGUARD_BATCH_SIZE=${recommended}`);
  }
  return 0;
}
