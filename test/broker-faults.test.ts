/**
 * Fault tests of the RabbitMQ and SQS backends, end to end: a real broker started by the test (Debian's
 * rabbitmq-server; fauxqs, the SQS/S3 emulator from npm), worker daemons as real processes (the CLI's
 * `worker`), a coordinator through runEvaluation, and a local run of the same seed to compare with.
 *
 *   (a) 2,000 cases, two workers, one killed with SIGKILL mid-run: every case accounted exactly once,
 *       the report equal to the local run, and the killed worker's batches ran again (attempt 2).
 *   (b) the broker restarted mid-run (SQS: its endpoint unreachable for 5 s, every connection cut):
 *       coordinator and worker reconnect and the report is still equal.
 *   (c) SIGTERM during a long case: the worker hands its batch back at once, uncounted, and another
 *       worker finishes it long before any lease would have expired.
 *   (d) SIGINT to the coordinator (`metaguard evaluate`) mid-run: exit 130 naming the withdrawn job;
 *       the worker drops the batch it holds and the job's other batches; nothing is left pending and
 *       nothing is dead-lettered.
 *   (e) a results frame with a flipped byte (as read by the coordinator): its batch is sent again
 *       (these brokers cannot say whether a batch still exists, so at once) and the report is equal to
 *       the local run.
 *
 * For SQS the lease is the visibility timeout (4 s here), which ends on its own after the kill.
 *
 * Run: node --import tsx --test test/broker-faults.test.ts
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateQueueConfig } from '../src/options/queue.ts';
import { createBackend } from '../src/queue/index.ts';
import type { Backend, ResultEntry } from '../src/queue/types.ts';
import type { QueueDispatcher } from '../src/dispatch/queue.ts';
import { assertSameVerdict, fixture, killAllWorkers, localReport, queueReport, spawnWorker, type RunOptions } from './helpers/queue-harness.ts';
import { startRabbit, type RabbitServer } from './helpers/rabbitmq-server.ts';
import { startFauxqs } from './helpers/fauxqs-server.ts';
import { until } from './helpers/poll.ts';

// Cases busy-wait SLOW_MS each: short, so that 2,000 of them take seconds (the local reference run reads
// it too; outcomes do not depend on it).
process.env.SLOW_MS = '2';
const WORKER_ENV = { SLOW_MS: '2' };

interface Broker {
  /** The queue config of a fresh queue on this broker. */
  config(extra?: object): Record<string, unknown>;
  restart(): Promise<void>;
  stop(): Promise<void>;
  /** The broker's own log, for a failing test's message. */
  log(): string;
}

interface BrokerKind {
  name: string;
  start(): Promise<Broker>;
}

const rabbitKind: BrokerKind = {
  name: 'rabbitmq',
  async start() {
    const server: RabbitServer = await startRabbit();
    return {
      config: (extra = {}) => ({ backend: 'rabbitmq', url: server.url, queue: `t_${randomUUID().slice(0, 8)}`, heartbeat: 2, ...extra }),
      restart: () => server.restart(),
      stop: () => server.stop(),
      log: () => `rabbitmq log:\n${server.logTail()}`,
    };
  },
};

const sqsKind: BrokerKind = {
  name: 'sqs',
  async start() {
    const server = await startFauxqs();
    return {
      // The lease is the visibility timeout: short, so that the killed worker's batches come back soon.
      config: (extra = {}) => ({
        backend: 'sqs',
        endpoint_url: server.endpoint,
        region: 'us-east-1',
        aws_access_key_id: 'test',
        aws_secret_access_key: 'test',
        queue: `t${randomUUID().slice(0, 8)}`,
        ...extra,
        ...((extra as { lease_seconds?: number }).lease_seconds === 10 ? { lease_seconds: 4 } : {}),
      }),
      // SQS is a managed service: what fails is the endpoint or the network to it, for a while.
      restart: () => server.outage(5000),
      stop: () => server.stop(),
      log: () => `fauxqs output:\n${server.logTail()}`,
    };
  },
};

const slow = (n: number): RunOptions => ({ task: fixture('slow/task.mjs'), baseline: fixture('slow/baseline.mjs'), candidate: fixture('slow/candidate.mjs'), n });

/** Fails with `diagnostics()` when `p` has not settled within `ms` (instead of a bare test timeout). */
function within<T>(p: Promise<T>, ms: number, diagnostics: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  // A run that fails (not only one that hangs) says what the workers said.
  const failed = p.catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n${diagnostics()}`, { cause: err });
  });
  return Promise.race([failed, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not finished within ${ms} ms\n${diagnostics()}`)), ms)))]).finally(() => clearTimeout(timer));
}

const cliEntry = fileURLToPath(new URL('../src/cli/run.ts', import.meta.url));

/** `metaguard ARGS` as a child process that a test can signal; `done` resolves with its exit and output. */
function startCli(args: string[]) {
  const env: NodeJS.ProcessEnv = { NO_COLOR: '1' };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('METAGUARD_') && !k.startsWith('NODE_TEST')) env[k] = v;
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), cliEntry, ...args], { cwd: mkdtempSync(join(tmpdir(), 'mg-cli-')), env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stdout!.resume();
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
  const done = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    }),
  );
  return { child, stderr: () => stderr, done };
}

function claimedAttempts(output: string): number[] {
  return [...output.matchAll(/"event":"batch_claimed"[^\n]*"attempt":(\d+)/g)].map((m) => Number(m[1]));
}

function faults(kind: BrokerKind): void {
  describe(`broker faults: ${kind.name}`, { concurrency: false }, () => {
    let broker: Broker;
    let expected2000: Awaited<ReturnType<typeof localReport>>;

    before(async () => {
      [broker, expected2000] = await Promise.all([kind.start(), localReport(slow(2000))]);
    });
    after(async () => {
      killAllWorkers();
      await broker?.stop();
    });

    const base = { lease_seconds: 10, heartbeat_check_interval: 0.25, heartbeat_timeout: 5, batch_size: 20 };

    it('(a) kill -9 of one of two workers mid-run: 2,000 cases accounted exactly once, report equal to a local run', async () => {
      const qc = broker.config(base);
      const a = spawnWorker(qc, { args: ['--threads', '1'], env: WORKER_ENV });
      const b = spawnWorker(qc, { args: ['--threads', '1', '--log-level', 'debug'], env: WORKER_ENV });
      let killedAt = -1;
      let last = { done: 0, total: 0 };
      const report = await within(
        queueReport(slow(2000), qc, {
          onProgress: (done, total) => {
            last = { done, total };
            if (killedAt < 0 && done > total * 0.3) {
              killedAt = done;
              a.child.kill('SIGKILL');
            }
          },
        }),
        200_000,
        () => `progress ${last.done}/${last.total}; worker B output:\n${b.output().slice(-6000)}\n${broker.log()}`,
      );
      assert.ok(killedAt > 0 && killedAt < last.total, `worker A was killed mid-run (at ${killedAt}/${last.total})`);
      assert.equal((await a.exited).signal, 'SIGKILL');
      assert.equal(last.done, last.total, 'every case accounted');
      assert.equal(report.baseline.total, 2000);
      assert.equal(report.candidate.total, 2000);
      assertSameVerdict(report, expected2000);
      // The batches A held when it died came back to B as a second attempt — or, when A had published
      // their results just before it died, as copies of a finished job that B drops after the run
      // (the only batches of the job still queued once every case is accounted).
      await until(
        'the killed worker\'s batches to come back to B (run again as attempt 2, or dropped as a finished job\'s)',
        () => claimedAttempts(b.output()).some((n) => n === 2) || /"event":"job_withdrawn"[^\n]*dropping a batch of a withdrawn job/.test(b.output()),
        30_000,
      );
      b.child.kill('SIGTERM');
      assert.equal((await b.exited).code, 0, b.output().slice(-3000));
    });

    it('(b) the broker restarted mid-run: coordinator and worker reconnect and finish exactly once', async () => {
      const qc = broker.config(base);
      const w = spawnWorker(qc, { args: ['--threads', '2'], env: WORKER_ENV });
      let restarting: Promise<void> | undefined;
      let progress = '';
      const report = await within(
        queueReport(slow(2000), qc, {
          onProgress: (done, total) => {
            progress = `${done}/${total}`;
            if (!restarting && done > total * 0.3) restarting = broker.restart();
          },
        }),
        200_000,
        () => `progress ${progress}; worker output:\n${w.output().slice(-6000)}\n${broker.log()}`,
      );
      assert.ok(restarting, 'the broker was restarted mid-run');
      await restarting;
      assertSameVerdict(report, expected2000);
      assert.match(w.output(), /"event":"backend_reconnected"/, 'the worker saw the outage and came back');
      w.child.kill('SIGTERM');
      assert.equal((await w.exited).code, 0, w.output().slice(-3000));
    });

    it('(c) SIGTERM during a long case hands the batch back at once, uncounted, and another worker finishes it', async () => {
      const qc = broker.config({ ...base, lease_seconds: 60, batch_size: 1 });
      const long: RunOptions = { task: fixture('slow/task.mjs'), baseline: fixture('slow/long.mjs'), candidate: fixture('slow/long.mjs'), n: 2, timeoutS: 20 };
      const caseStarted = join(mkdtempSync(join(tmpdir(), 'mg-long-')), 'started');
      const env = { LONG_MS: '2500', LONG_STARTED_FILE: caseStarted };
      const a = spawnWorker(qc, { args: ['--threads', '1', '--shutdown-timeout-s', '0.3', '--log-level', 'debug'], env });
      const started = Date.now();
      const run = queueReport(long, qc);
      const aLog = (what: string) => () => `${what}; worker A output:\n${a.output().slice(-6000)}\n${broker.log()}`;
      await until(aLog('worker A claimed a batch'), () => /"event":"batch_claimed"/.test(a.output()), 60_000);
      await until(aLog('worker A inside a long case'), () => existsSync(caseStarted), 60_000);
      a.child.kill('SIGTERM');
      assert.equal((await a.exited).code, 0, a.output().slice(-3000));
      assert.match(a.output(), /"event":"queue_requeued"[^\n]*worker draining/, 'A handed its batch back');
      const b = spawnWorker(qc, { args: ['--threads', '2', '--log-level', 'debug'], env });
      const report = await run;
      assert.ok(Date.now() - started < 50_000, `finished in ${Date.now() - started} ms (a 60 s lease was never waited for)`);
      assert.equal(report.candidate.passes, 2);
      assert.equal(report.baseline.passes, 2);
      assert.deepEqual([...new Set(claimedAttempts(b.output()))], [1], 'a hand-back is not an attempt');
      b.child.kill('SIGTERM');
      assert.equal((await b.exited).code, 0, b.output().slice(-3000));
    });

    it('(d) SIGINT to the coordinator mid-run: exit 130, the job withdrawn; the worker drops its batches; nothing pending, nothing dead', async () => {
      const qc = broker.config({ ...base, lease_seconds: 60, batch_size: 2 });
      const w = spawnWorker(qc, { args: ['--threads', '1', '--log-level', 'debug'], env: { LONG_MS: '2000' } });
      const cli = startCli(['evaluate', '--task', fixture('slow/task.mjs'), '--baseline', fixture('slow/long.mjs'), '--candidate', fixture('slow/long.mjs'), '--n', '20', '--queue-config', JSON.stringify(qc), '--log-json', '--report-dir', mkdtempSync(join(tmpdir(), 'mg-int-'))]);
      await until('the worker to hold a batch', () => /"event":"batch_claimed"/.test(w.output()), 90_000);
      cli.child.kill('SIGINT');
      const r = await cli.done;
      assert.equal(r.code, 130, r.stderr.slice(-3000));
      const line = r.stderr.split('\n').filter((l) => l.startsWith('metaguard: ')).join('\n');
      assert.match(line, new RegExp(`^metaguard: interrupted by SIGINT with \\d+ of 40 cases done; job [0-9a-f-]{36} withdrawn from queue "${qc.queue}" on ${kind.name} \\(\\d+ pending batches removed\\)$`));
      await until('the worker to drop the batch it held', () => /"event":"job_withdrawn"/.test(w.output()), 60_000);
      // The job's other batches are dropped as the worker meets them: the queue drains, nothing dead.
      const admin = await createBackend(validateQueueConfig(qc));
      try {
        let last = '';
        await until('the withdrawn job\'s batches to be dropped', async () => {
          const s = await admin.stats();
          last = JSON.stringify({ pending: s.pending, dead: s.dead, delayed: s.delayed });
          return s.pending.normal === 0 && s.dead === 0 && s.delayed === 0;
        }, 90_000);
        assert.equal((await admin.listDead()).length, 0, `nothing dead-lettered (${last})`);
      } finally {
        await admin.close();
      }
      w.child.kill('SIGTERM');
      assert.equal((await w.exited).code, 0, w.output().slice(-3000));
    });

    it('(e) a results frame with a flipped byte sends its batch back; the run finishes equal to a local run', async () => {
      const qc = broker.config({ ...base, hmac_key: `k-${randomUUID()}` });
      const run = slow(200);
      const expected = await localReport(run);
      const w = spawnWorker(qc, { args: ['--threads', '2'], env: WORKER_ENV });
      let d: QueueDispatcher | undefined;
      let flipped = 0;
      const flipping = (backend: Backend): Backend =>
        new Proxy(backend, {
          get(target, prop, receiver) {
            if (prop === 'readResults') {
              return async (jobId: string, cursor: string, blockMs: number) => {
                const read = await target.readResults(jobId, cursor, blockMs);
                const entries = read.entries.map((e): ResultEntry => {
                  if (e.kind !== 'results' || flipped >= 2) return e;
                  flipped++;
                  const frame = Buffer.from(e.frame);
                  frame[frame.length - 3] ^= 0x40;
                  return { ...e, frame };
                });
                return { cursor: read.cursor, entries };
              };
            }
            const v = Reflect.get(target, prop, receiver);
            return typeof v === 'function' ? v.bind(target) : v;
          },
        });
      const report = await within(queueReport(run, qc, { wrap: flipping, onDispatcher: (x) => (d = x) }), 120_000, () => w.output().slice(-4000));
      assert.equal(flipped, 2);
      assertSameVerdict(report, expected);
      assert.equal(d!.forged.bad_signature, 2, JSON.stringify(d!.forged));
      w.child.kill('SIGTERM');
      assert.equal((await w.exited).code, 0, w.output().slice(-3000));
    });
  });
}

faults(rabbitKind);
faults(sqsKind);
