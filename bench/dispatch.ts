/**
 * End-to-end throughput of one evaluation (cases/s, both roles counted) on a trivial task:
 * the local dispatcher with 1 and 2 threads, the embedded in-process queue, Redis, Kafka (librdkafka's
 * mock cluster), RabbitMQ (a rabbitmq-server started here) and SQS (the fauxqs emulator) each with one
 * worker daemon process — side by side in one run, with the ratio to the local 2-thread figure.
 *
 *   node --import tsx bench/dispatch.ts [--n 20000] [--no-redis] [--no-kafka] [--no-rabbitmq] [--no-sqs]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { resolveEvaluateOptions, runEvaluation } from '../src/evaluate.ts';
import { printTable } from './table.ts';

const trivial = { task: 'sum' };

export interface DispatchRow {
  path: string;
  threads: number;
  cases: number;
  seconds: number;
  cases_per_sec: number;
}

async function measure(path: string, threads: number, n: number, values: Record<string, unknown>): Promise<DispatchRow> {
  const dir = mkdtempSync(join(tmpdir(), 'mg-bench-'));
  try {
    const options = resolveEvaluateOptions({ values: { ...trivial, n, reportDir: dir, ...values }, env: {} });
    const started = performance.now();
    await runEvaluation(options);
    const seconds = (performance.now() - started) / 1000;
    return { path, threads, cases: 2 * n, seconds, cases_per_sec: Math.round((2 * n) / seconds) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One row through a broker the bench starts, with one worker daemon of 2 threads. */
async function brokerRow(rows: DispatchRow[], path: string, n: number, unavailable: string | undefined, start: () => Promise<{ queueConfig: Record<string, unknown>; stop(): Promise<void> }>): Promise<void> {
  if (unavailable) {
    process.stderr.write(`bench: ${unavailable}, skipping the ${path} row\n`);
    return;
  }
  const { spawnWorker } = await import('../test/helpers/queue-harness.ts');
  const broker = await start();
  const worker = spawnWorker(broker.queueConfig, { args: ['--threads', '2'] });
  try {
    await measure('warmup', 2, 500, { dispatcher: 'queue', queueConfig: broker.queueConfig });
    rows.push(await measure(path, 2, n, { dispatcher: 'queue', queueConfig: broker.queueConfig }));
  } finally {
    worker.child.kill('SIGTERM');
    await worker.exited;
    await broker.stop();
  }
}

export async function runDispatchBench(n: number, withRedis: boolean, withKafka = false, withRabbit = false, withSqs = false): Promise<DispatchRow[]> {
  const rows: DispatchRow[] = [];
  // Warm-up: module loading and JIT, not measured.
  await measure('warmup', 1, 500, { parallel: 1 });
  rows.push(await measure('local', 1, n, { parallel: 1 }));
  rows.push(await measure('local', 2, n, { parallel: 2 }));
  rows.push(await measure('queue: memory (in-process worker)', 2, n, { dispatcher: 'queue', queueConfig: { backend: 'memory', spawn_local_workers: 2 } }));
  if (withRedis) {
    const { redisAvailable, startRedis } = await import('../test/helpers/redis-server.ts');
    if (!redisAvailable()) {
      process.stderr.write('bench: redis-server not found, skipping the Redis row\n');
    } else {
      const { spawnWorker } = await import('../test/helpers/queue-harness.ts');
      const redis = await startRedis();
      try {
        // The same evaluation with the native codec and with METAGUARD_NATIVE=0 (coordinator and worker).
        for (const native of [true, false]) {
          const queueConfig = { backend: 'redis', connection: { port: redis.port }, queue: native ? 'bench' : 'bench-js' };
          const saved = process.env.METAGUARD_NATIVE;
          if (!native) process.env.METAGUARD_NATIVE = '0';
          const worker = spawnWorker(queueConfig, { args: ['--threads', '2'], env: native ? {} : { METAGUARD_NATIVE: '0' } });
          try {
            await measure('warmup', 2, 500, { dispatcher: 'queue', queueConfig });
            rows.push(await measure(`queue: redis (1 worker daemon)${native ? '' : ', METAGUARD_NATIVE=0'}`, 2, n, { dispatcher: 'queue', queueConfig }));
          } finally {
            if (saved === undefined) delete process.env.METAGUARD_NATIVE;
            else process.env.METAGUARD_NATIVE = saved;
            worker.child.kill('SIGTERM');
            await worker.exited;
          }
        }
      } finally {
        await redis.stop();
      }
    }
  }
  if (withKafka) {
    const { kafkaMockUnavailable, startKafkaMock } = await import('../test/helpers/kafka-broker.ts');
    const why = kafkaMockUnavailable();
    if (why) {
      process.stderr.write(`bench: ${why}, skipping the Kafka row\n`);
    } else {
      const { spawnWorker } = await import('../test/helpers/queue-harness.ts');
      const broker = await startKafkaMock({ partitions: 4, topics: ['bench'] });
      const queueConfig = { backend: 'kafka', bootstrap_servers: broker.bootstrap, topic: 'bench', queue: 'bench', heartbeat_timeout: 6, heartbeat_check_interval: 0.1 };
      const worker = spawnWorker(queueConfig, { args: ['--threads', '2'] });
      try {
        await measure('warmup', 2, 500, { dispatcher: 'queue', queueConfig });
        rows.push(await measure('queue: kafka mock (1 worker daemon)', 2, n, { dispatcher: 'queue', queueConfig }));
      } finally {
        worker.child.kill('SIGTERM');
        await worker.exited;
        await broker.stop();
      }
    }
  }
  if (withRabbit) {
    const { rabbitUnavailable, startRabbit } = await import('../test/helpers/rabbitmq-server.ts');
    await brokerRow(rows, 'queue: rabbitmq (1 worker daemon)', n, rabbitUnavailable(), async () => {
      const server = await startRabbit();
      return { queueConfig: { backend: 'rabbitmq', url: server.url, queue: 'bench' }, stop: () => server.stop() };
    });
  }
  if (withSqs) {
    const { fauxqsUnavailable, startFauxqs } = await import('../test/helpers/fauxqs-server.ts');
    await brokerRow(rows, 'queue: sqs via fauxqs (1 worker daemon)', n, fauxqsUnavailable(), async () => {
      const server = await startFauxqs();
      const queueConfig = { backend: 'sqs', endpoint_url: server.endpoint, region: 'us-east-1', aws_access_key_id: 'bench', aws_secret_access_key: 'bench', queue: 'bench' };
      return { queueConfig, stop: () => server.stop() };
    });
  }
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({
    options: {
      n: { type: 'string', default: '20000' },
      'no-redis': { type: 'boolean', default: false },
      'no-kafka': { type: 'boolean', default: false },
      'no-rabbitmq': { type: 'boolean', default: false },
      'no-sqs': { type: 'boolean', default: false },
    },
  });
  const rows = await runDispatchBench(Number(values.n), !values['no-redis'], !values['no-kafka'], !values['no-rabbitmq'], !values['no-sqs']);
  const ref = rows.find((r) => r.path === 'local' && r.threads === 2)!.cases_per_sec;
  printTable(
    `End-to-end evaluation throughput, trivial task, n=${values.n} per role`,
    rows.map((r) => ({ ...r, seconds: Number(r.seconds.toFixed(2)), vs_local_2_threads: `${(r.cases_per_sec / ref).toFixed(2)}x` })),
  );
}
