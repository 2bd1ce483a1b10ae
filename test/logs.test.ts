/**
 * JSON log lines: a worker daemon with --log-json, --log-file and --log-level debug (the
 * per-batch events are debug), and a coordinator with a log file, through Redis. Each line carries timestamp, level and event; the events appear where
 * they happen (case_timeout and case_oom on the worker that ran the case, dead_lettered on the
 * worker that received the poison message, queue_dispatched on the coordinator, ...).
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, type RedisServer } from './helpers/redis-server.ts';
import { fixture, killAllWorkers, spawnWorker } from './helpers/queue-harness.ts';
import { resolveEvaluateOptions, runEvaluation } from '../src/evaluate.ts';
import { createLogger } from '../src/observe/log.ts';

const skip = false; // startRedis() fails naming the package when redis-server is missing
let redis: RedisServer;
before(async () => {
  if (!skip) redis = await startRedis();
});
after(async () => {
  killAllWorkers();
  await redis?.stop();
});

function lines(path: string): Record<string, unknown>[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

it('worker and coordinator write the documented events as JSON lines', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-logs-'));
  const workerLog = join(dir, 'worker.log');
  const coordLog = join(dir, 'coordinator.log');
  const queueConfig = { backend: 'redis', connection: { port: redis.port }, queue: 'logs', batch_size: 5, heartbeat_check_interval: 0.2 };
  const raw = new Redis({ port: redis.port });
  raw.on('error', () => {});
  await raw.lpush('mg:{logs}:pending:normal', 'not-a-batch');
  const w = spawnWorker(queueConfig, { args: ['--threads', '1', '--log-file', workerLog, '--log-level', 'debug', '--default-mem-mb', '64'] });
  const options = resolveEvaluateOptions({
    values: {
      task: fixture('length-task.mjs'),
      baseline: fixture('loop.mjs'),
      candidate: fixture('heap-hog.mjs'),
      n: 12,
      // Generous: on a loaded machine the heap hog must reach its 64 MiB limit (E_OOM) before this.
      timeoutS: 5,
      memMb: 64,
      dispatcher: 'queue',
      queueConfig,
      reportDir: dir,
      logFile: coordLog,
    },
    env: {},
  });
  try {
    const outcome = await runEvaluation(options, { logger: createLogger({ file: coordLog, level: 'debug' }) });
    assert.ok(outcome.report.baseline.errors.E_TIMEOUT! > 0 && outcome.report.candidate.errors.E_OOM! > 0, JSON.stringify([outcome.report.baseline.errors, outcome.report.candidate.errors]));
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  } finally {
    // An open client would keep this file's process alive after a failure.
    await raw.quit();
  }

  const wl = lines(workerLog);
  for (const l of wl) {
    assert.equal(typeof l.timestamp, 'string');
    assert.ok(!Number.isNaN(Date.parse(l.timestamp as string)));
    assert.ok(['debug', 'info', 'warn', 'error'].includes(l.level as string));
  }
  const events = new Set(wl.map((l) => l.event));
  for (const e of ['worker_started', 'queue_completed', 'case_timeout', 'case_oom', 'dead_lettered', 'worker_draining', 'worker_stopped']) {
    assert.ok(events.has(e), `worker log has ${e}: ${[...events].join(', ')}`);
  }
  const started = wl.find((l) => l.event === 'worker_started' && l.node !== undefined)!;
  assert.equal(started.node, process.version, 'worker_started names the Node version');
  const timeout = wl.find((l) => l.event === 'case_timeout')!;
  assert.equal(timeout.level, 'warn');
  assert.equal(typeof timeout.case_index, 'number');
  const dead = wl.find((l) => l.event === 'dead_lettered')!;
  assert.match(String(dead.reason), /unknown batch id/);
  assert.deepEqual([dead.code, dead.retryable], ['MG_ERR_MALFORMED_BATCH', false], 'dead_lettered carries the code and whether it is retryable');
  // The same lines went to stderr (--log-json is set by the harness).
  assert.match(w.output(), /"event":"worker_started"/);

  const cl = lines(coordLog);
  const cevents = new Set(cl.map((l) => l.event));
  for (const e of ['evaluation_started', 'queue_dispatched', 'queue_completed', 'case_timeout', 'case_oom', 'evaluation_finished']) {
    assert.ok(cevents.has(e), `coordinator log has ${e}: ${[...cevents].join(', ')}`);
  }
});
