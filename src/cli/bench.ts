/**
 * `metaguard bench`: codec speed (native vs JS, on 1,000-case batches), the end-to-end throughput
 * rows (the limit — the case work in a tight loop —, local, the memory queue, and the configured
 * backend) and the batch-size sweep against the configured backend (memory by default), ending with
 * the line to paste into the environment file: METAGUARD_BATCH_SIZE=<n>. The workload is the built-in
 * `sum` task, or the operator's own `--task/--baseline/--candidate`.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { codecSpeedup, formatCodecBench, runCodecBench, type CodecBenchRow } from '../bench/codec.js';
import { batchSizeSweep, recommendationAtEdge, type SweepRow } from '../bench/sweep.js';
import { throughputRows, type ThroughputRow } from '../bench/throughput.js';
import { builtinTask } from '../task/builtin.js';
import { invalidOption } from '../errors.js';
import { describeOptions, resolveOptions } from '../options/schema.js';
import { benchSchema, type BenchOptions } from '../options/bench.js';
import { resolveQueueConfig } from '../options/queue.js';
import { parseFlags as parseFlagsOnly } from './args.js';

const help = `Usage: metaguard bench [options]

Measures the batch codec (native vs JS, encode and decode of 1,000-case batches); the end-to-end
throughput of the workload against its limit (the case work in a tight loop on --workers threads),
locally, through the memory queue and through the configured backend; and the throughput for a
sweep of batch sizes against the configured backend, then prints the recommended batch size as
METAGUARD_BATCH_SIZE=<n> (with a warning when it is the largest or smallest size tried). The
workload is the built-in sum task, or your own --task with --baseline and --candidate. Against
Redis or Kafka, start workers with the same queue config first.

Options:
${describeOptions(benchSchema)}`;

/** The workload's files (a built-in name stays a name); one coded error for what is missing. */
function parseWorkload(options: BenchOptions): { task: string; baseline?: string; candidate?: string } {
  if (builtinTask(options.task) && options.baseline === undefined && options.candidate === undefined) return { task: options.task };
  const file = (flag: string, value: string | undefined) => {
    if (value === undefined) throw invalidOption(flag, `is required with --task ${options.task} (a task file, or a built-in task with your own implementations)`);
    const path = resolve(value);
    if (!existsSync(path)) throw invalidOption(flag, `no such file: ${value}`);
    return path;
  };
  const builtin = builtinTask(options.task);
  const task = builtin ? builtin.task : file('--task', options.task);
  return { task, baseline: file('--baseline', options.baseline ?? builtin?.baseline), candidate: file('--candidate', options.candidate ?? builtin?.candidate) };
}

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
  const workload = parseWorkload(options);
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
  let throughput: ThroughputRow[] = [];
  if (!options.skipThroughput) {
    say(`throughput: ${options.n} cases per role, ${options.workers} threads, workload ${workload.baseline ? workload.task : `built-in ${workload.task}`}`);
    say('  path                                                       cases/s   share of the limit');
    throughput = await throughputRows({ ...workload, n: options.n }, options.workers, config.backend === 'memory' ? undefined : queueConfig, (row) =>
      say(`  ${row.path.padEnd(56)} ${String(row.cases_per_sec).padStart(8)}   ${row.share_of_limit.toFixed(3)}`),
    );
    say('');
  }
  let sweep: SweepRow[] = [];
  let recommended: number | null = null;
  let edge: 'largest' | 'smallest' | null = null;
  if (!options.skipSweep) {
    say(`sweep: ${options.n} cases per role per batch size, backend ${config.backend}${config.backend === 'memory' ? ` (${options.workers} in-process workers)` : ''}`);
    say('  batch_size   cases/s');
    const result = await batchSizeSweep({
      queueConfig,
      sizes,
      n: options.n,
      localWorkers: options.workers,
      workload,
      onRow: (row) => say(`  ${String(row.batch_size).padStart(10)}   ${String(row.cases_per_sec).padStart(7)}`),
    });
    sweep = result.sweep;
    recommended = result.recommended_batch_size;
    edge = recommendationAtEdge(sweep, recommended);
    if (edge) {
      const hint = edge === 'largest' ? 'throughput may still grow past it: add larger sizes to --sizes' : 'smaller sizes may do as well: add smaller sizes to --sizes';
      process.stderr.write(`metaguard: warning: the recommended batch size ${recommended} is the ${edge} size of the sweep; ${hint}\n`);
    }
  }
  if (options.json) {
    const out = {
      codec: codec.map((r) => ({ impl: r.impl, op: r.op, ops_per_sec: Math.round(r.ops_per_sec), bytes_per_sec: Math.round(r.bytes_per_sec) })),
      throughput,
      sweep,
      recommended_batch_size: recommended,
      recommendation_at_edge: edge,
    };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } else if (recommended !== null) {
    say('');
    say('# the smallest batch size within 5% of the best throughput; paste into the environment file:');
    say(`METAGUARD_BATCH_SIZE=${recommended}`);
  }
  return 0;
}
