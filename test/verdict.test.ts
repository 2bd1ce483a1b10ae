/**
 * A verdict you can trust: every way a run can go wrong around its cases ends in exit 2 (or 130/143
 * for a signal) with one line saying what happened — never in a verdict. Locally and through a real
 * redis-server with worker daemons as real processes.
 *
 * Run: node --import tsx --test --test-concurrency=1 test/verdict.test.ts
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { runCli, type CliResult } from './helpers/run-cli.ts';
import { redisAvailable, startRedis, type RedisServer } from './helpers/redis-server.ts';
import { fixture, killAllWorkers, spawnWorker, type WorkerProcess } from './helpers/queue-harness.ts';
import { resolveEvaluateOptions, runEvaluation } from '../src/evaluate.ts';
import { LocalDispatcher } from '../src/dispatch/local.ts';
import type { Dispatcher } from '../src/dispatch/types.ts';
import { createProgress } from '../src/cli/progress.ts';
import type { Report } from '../src/reports/types.ts';
import { until } from './helpers/poll.ts';

const entry = fileURLToPath(new URL('../src/cli/run.ts', import.meta.url));
const tsx = import.meta.resolve('tsx');
const tmp = mkdtempSync(join(tmpdir(), 'mg-verdict-'));
const freshDir = (name: string) => join(tmp, `${name}-${randomUUID().slice(0, 8)}`);
const v = (name: string) => fixture(join('verdict', name));
const lengthTask = fixture('length-task.mjs');
const slowTask = fixture('slow/task.mjs');

const describeRun = (r: CliResult) => `exit ${r.code} signal ${r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

/** stderr's lines that are not log lines (the one-line error is what the user reads). */
function errorLines(r: CliResult): string[] {
  return r.stderr.split('\n').filter((l) => l.startsWith('metaguard: '));
}

function onlyReport(dir: string): Report {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  assert.equal(files.length, 1, `one report in ${dir}: ${files.join(', ')}`);
  return JSON.parse(readFileSync(join(dir, files[0]), 'utf8')) as Report;
}

interface LiveCli {
  child: ChildProcess;
  stderr(): string;
  done: Promise<CliResult>;
}

/** The CLI as a child process we can signal. */
function startCli(args: string[], cwd: string, env: Record<string, string> = {}): LiveCli {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, val] of Object.entries(process.env)) if (!k.startsWith('METAGUARD_') && !k.startsWith('NODE_TEST')) base[k] = val;
  const child = spawn(process.execPath, ['--import', tsx, entry, ...args], { cwd, env: { ...base, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  void done.then(() => clearTimeout(timer));
  return { child, stderr: () => stderr, done };
}

describe('local: load failures are errors, not verdicts', { concurrency: 2 }, () => {
  it('a baseline that throws at import: exit 2, one line naming the role, the file and the error; no report', async () => {
    const dir = freshDir('import');
    const r = await runCli(['evaluate', '--task', lengthTask, '--baseline', fixture('throws-at-import.mjs'), '--candidate', fixture('good.mjs'), '--n', '50', '--report-dir', dir]);
    assert.equal(r.code, 2, describeRun(r));
    assert.equal(r.stderr, `metaguard: baseline ${fixture('throws-at-import.mjs')}: failed to load: broken module\n`);
    assert.equal(r.stdout, '');
    assert.ok(!existsSync(dir), 'no report for an error');
  });

  it('a candidate with a syntax error: exit 2 naming the candidate (not a reject)', async () => {
    const r = await runCli(['evaluate', '--task', lengthTask, '--baseline', fixture('good.mjs'), '--candidate', v('syntax-error.mjs'), '--n', '50', '--report-dir', freshDir('syntax')]);
    assert.equal(r.code, 2, describeRun(r));
    assert.equal(errorLines(r).length, 1, r.stderr);
    assert.equal(r.stderr, `metaguard: candidate ${v('syntax-error.mjs')}: failed to load: line 3:21: Unexpected ";"\n`);
  });

  it('a task whose gen throws: exit 2 naming the task file and the error', async () => {
    const r = await runCli(['evaluate', '--task', v('gen-throws-task.mjs'), '--baseline', fixture('good.mjs'), '--candidate', fixture('good.mjs'), '--n', '10', '--report-dir', freshDir('gen')]);
    assert.equal(r.code, 2, describeRun(r));
    assert.equal(r.stderr, `metaguard: task ${v('gen-throws-task.mjs')}: gen(10, 42) threw: no cases today\n`);
  });

  it('a task whose gen returns a function in a case: exit 2 naming the task and the case (never run as something else)', async () => {
    const r = await runCli(['evaluate', '--task', v('gen-function-task.mjs'), '--baseline', fixture('good.mjs'), '--candidate', fixture('good.mjs'), '--n', '10', '--report-dir', freshDir('genfn')]);
    assert.equal(r.code, 2, describeRun(r));
    assert.equal(r.stderr, `metaguard: task ${v('gen-function-task.mjs')}: gen(10, 42): case 3 cannot be serialized: a function cannot be a case argument\n`);
  });

  it('an implementation without solve: exit 2 naming the role and the file', async () => {
    const r = await runCli(['evaluate', '--task', lengthTask, '--baseline', fixture('no-solve.mjs'), '--candidate', fixture('good.mjs'), '--n', '10', '--report-dir', freshDir('nosolve')]);
    assert.equal(r.code, 2, describeRun(r));
    assert.equal(r.stderr, `metaguard: baseline ${fixture('no-solve.mjs')}: must export \`solve\` (a named export or a default-exported function)\n`);
  });
});

describe('queue: the coordinator checks the implementations before it sends anything', { concurrency: 2 }, () => {
  // With thread isolation the baseline is checked in the gen thread after gen, the candidate in a
  // thread of its own.
  const queueConfig = JSON.stringify({ backend: 'memory', spawn_local_workers: 1 });
  const run = (baseline: string, candidate: string, dir: string) => runCli(['evaluate', '--task', lengthTask, '--baseline', baseline, '--candidate', candidate, '--n', '20', '--queue-config', queueConfig, '--report-dir', dir]);

  it('a baseline that throws at import, a candidate with a syntax error, an implementation without solve: exit 2 naming each, no report', async () => {
    const dir = freshDir('q-import');
    let r = await run(fixture('throws-at-import.mjs'), fixture('good.mjs'), dir);
    assert.equal(r.code, 2, describeRun(r));
    assert.equal(r.stderr, `metaguard: baseline ${fixture('throws-at-import.mjs')}: failed to load: broken module\n`);
    r = await run(fixture('good.mjs'), v('syntax-error.mjs'), dir);
    assert.equal(r.code, 2, describeRun(r));
    assert.equal(r.stderr, `metaguard: candidate ${v('syntax-error.mjs')}: failed to load: line 3:21: Unexpected ";"\n`);
    r = await run(fixture('good.mjs'), fixture('no-solve.mjs'), dir);
    assert.equal(r.code, 2, describeRun(r));
    assert.equal(r.stderr, `metaguard: candidate ${fixture('no-solve.mjs')}: must export \`solve\` (a named export or a default-exported function)\n`);
    assert.ok(!existsSync(dir), 'no report for an error');
  });

  it('a timer the baseline leaves behind is not blamed on a candidate that loads slowly (it loads in a thread of its own)', async () => {
    const dir = freshDir('q-timer');
    const r = await run(v('timer-at-load-baseline.mjs'), v('slow-load-candidate.mjs'), dir);
    assert.doesNotMatch(r.stderr, /candidate .*failed to load/, describeRun(r));
    assert.ok(r.code === 0 || r.code === 1, describeRun(r));
  });

  it('a candidate\'s top-level code cannot change how the baseline is described', async () => {
    const dir = freshDir('q-rewire');
    const r = await run(v('rewires-baseline-baseline.mjs'), v('rewires-baseline-candidate.mjs'), dir);
    // A verdict (equal pass rates: rejected by the default gate's minimum delta), not an error.
    assert.equal(r.code, 1, describeRun(r));
    const report = onlyReport(dir);
    assert.equal(report.dispatcher, 'queue');
    assert.equal(JSON.stringify(report).includes('rewired'), false, 'no endpoint of the candidate\'s choosing in the report');
    assert.equal(report.baseline.http, undefined, 'the baseline ran as a module');
    assert.equal(report.baseline.passes, 20);
    assert.equal(report.candidate.passes, 20);
  });
});

describe('local: errors count toward --violation-cap', { concurrency: 2 }, () => {
  const args = (dir: string, baseline: string, ...extra: string[]) => ['evaluate', '--task', lengthTask, '--baseline', baseline, '--candidate', fixture('throws.mjs'), '--n', '100', '--policy', 'noninferiority:margin=0.2', '--report-dir', dir, ...extra];

  it('a candidate that throws on 10% of inputs under noninferiority is rejected (violations), errors kept apart', async () => {
    const dir = freshDir('errs');
    const r = await runCli(args(dir, fixture('good.mjs')));
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stdout, /^length: candidate REJECTED \(violations\)$/m);
    assert.match(r.stdout, /errors E_THROW=10 \(10 counted toward --violation-cap 0\)/);
    const report = onlyReport(dir);
    assert.deepEqual(report.decision, { adopt: false, reason: 'violations', counted_violations: 0, counted_errors: 10 });
  });

  it('the same candidate is adopted when the cap allows its 10 errors', async () => {
    const r = await runCli(args(freshDir('cap'), fixture('good.mjs'), '--violation-cap', '10'));
    assert.equal(r.code, 0, describeRun(r));
  });

  it('an error where the baseline errored on the same case does not count', async () => {
    const dir = freshDir('both');
    const r = await runCli(args(dir, fixture('throws.mjs')));
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(onlyReport(dir).decision.counted_errors, 0);
  });

  it('--help states the rule', async () => {
    const r = await runCli(['evaluate', '--help']);
    assert.match(r.stdout.replace(/\s+/g, ' '), /A candidate case ending in E_TIMEOUT, E_OOM, E_THROW, E_OUTPUT or E_CRASH where the baseline did not error on the same case counts toward --violation-cap/);
  });
});

describe('local: a queue config implies the queue dispatcher', { concurrency: 2 }, () => {
  const queueConfig = JSON.stringify({ backend: 'memory', spawn_local_workers: 1 });

  it('--queue-config without --dispatcher runs through the queue', async () => {
    const dir = freshDir('implied');
    const r = await runCli(['evaluate', '--task', 'top_k', '--n', '40', '--queue-config', queueConfig, '--report-dir', dir]);
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(onlyReport(dir).dispatcher, 'queue');
  });

  it('METAGUARD_QUEUE_CONFIG implies it too', async () => {
    const dir = freshDir('implied-env');
    const r = await runCli(['evaluate', '--task', 'top_k', '--n', '40', '--report-dir', dir], { env: { METAGUARD_QUEUE_CONFIG: queueConfig } });
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(onlyReport(dir).dispatcher, 'queue');
  });

  it('--dispatcher local with a queue config: exit 2 naming both', async () => {
    const r = await runCli(['evaluate', '--task', 'top_k', '--n', '40', '--dispatcher', 'local', '--queue-config', queueConfig, '--report-dir', freshDir('conflict')]);
    assert.equal(r.code, 2, describeRun(r));
    assert.equal(r.stderr, 'metaguard: --dispatcher local conflicts with --queue-config: a queue config runs cases through the queue (drop one of them)\n');
  });

  it('METAGUARD_DISPATCHER=local with METAGUARD_QUEUE_CONFIG: exit 2 naming both variables', async () => {
    const r = await runCli(['evaluate', '--task', 'top_k', '--n', '40', '--report-dir', freshDir('conflict-env')], { env: { METAGUARD_DISPATCHER: 'local', METAGUARD_QUEUE_CONFIG: queueConfig } });
    assert.equal(r.code, 2, describeRun(r));
    assert.equal(r.stderr, 'metaguard: METAGUARD_DISPATCHER local conflicts with METAGUARD_QUEUE_CONFIG: a queue config runs cases through the queue (drop one of them)\n');
  });
});

describe('local: nothing waits forever', { concurrency: 2 }, () => {
  it('--deadline-s stops a run that hangs: exit 2 with the cases done', async () => {
    const started = Date.now();
    const r = await runCli(['evaluate', '--task', lengthTask, '--baseline', fixture('good.mjs'), '--candidate', fixture('loop.mjs'), '--n', '200', '--timeout-s', '60', '--parallel', '1', '--deadline-s', '6', '--report-dir', freshDir('deadline')]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /^metaguard: --deadline-s 6 passed with \d+ of 400 cases done(; no case is left running)?\n$/);
    assert.ok(Date.now() - started < 30_000, `took ${Date.now() - started} ms`);
  });

  it('--deadline-s stops a task whose gen never returns (user code never runs in the coordinator\'s thread)', async () => {
    const r = await runCli(['evaluate', '--task', v('gen-hangs-task.mjs'), '--baseline', fixture('good.mjs'), '--candidate', fixture('good.mjs'), '--n', '10', '--deadline-s', '2', '--report-dir', freshDir('genhang')]);
    assert.equal(r.code, 2, describeRun(r));
    assert.equal(r.stderr, 'metaguard: --deadline-s 2 passed with 0 of 20 cases done\n');
  });

  it('SIGINT stops a task whose gen never returns: exit 130', async () => {
    const marker = freshDir('gen-started');
    const cli = startCli(['evaluate', '--task', v('gen-hangs-task.mjs'), '--baseline', fixture('good.mjs'), '--candidate', fixture('good.mjs'), '--n', '10', '--log-json', '--log-level', 'debug', '--report-dir', freshDir('genint')], tmp, { GEN_STARTED_FILE: marker });
    await until('evaluation_preparing', () => cli.stderr().includes('"evaluation_preparing"'), 60_000);
    await until('the task\'s gen to be running', () => existsSync(marker), 60_000);
    cli.child.kill('SIGINT');
    const r = await cli.done;
    assert.equal(r.code, 130, describeRun(r));
    assert.deepEqual(errorLines(r), ['metaguard: interrupted by SIGINT with 0 of 20 cases done']);
  });

  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    it(`${signal} stops a local run: exit ${code}, one line`, async () => {
      const cli = startCli(['evaluate', '--task', slowTask, '--baseline', v('slow-solve.mjs'), '--candidate', v('slow-solve.mjs'), '--n', '200', '--parallel', '1', '--log-json', '--report-dir', freshDir('sig')], tmp);
      await until('evaluation_started', () => cli.stderr().includes('"evaluation_started"'), 60_000);
      cli.child.kill(signal);
      const r = await cli.done;
      assert.equal(r.code, code, describeRun(r));
      assert.match(errorLines(r).join('\n'), new RegExp(`^metaguard: interrupted by ${signal} with \\d+ of 400 cases done; no case is left running$`));
    });
  }
});

describe('the gate on incomplete data (pure report logic)', () => {
  /** Runs locally, then marks every candidate case with index % 7 === 0 undelivered. */
  const lossy = (): Dispatcher => {
    const local = new LocalDispatcher({ threads: 2, env: process.env });
    return {
      async run(job, events) {
        const out = await local.run(job, events);
        for (const r of out.candidate) if (r.index % 7 === 0) Object.assign(r, { passed: false, error: { code: 'E_DELIVERY', message: 'batch dead-lettered: test' } });
        return out;
      },
      close: () => local.close(),
      destroy: () => local.destroy(),
    };
  };
  const run = (allowIncomplete: boolean) =>
    runEvaluation(resolveEvaluateOptions({ values: { task: 'top_k', n: 70, dispatcher: 'queue', queueConfig: { backend: 'memory' }, allowIncomplete, reportDir: freshDir('lossy') }, env: {} }), { createDispatcher: lossy });

  it('withholds the verdict: decision incomplete, counts and reason in the report', async () => {
    const { report } = await run(false);
    assert.equal(report.decision.adopt, false);
    assert.equal(report.decision.reason, 'incomplete');
    assert.deepEqual(report.incomplete, { undelivered_cases: 10, reason: 'batch dead-lettered: test', decided_on_delivered: false });
  });

  it('--allow-incomplete decides on the 60 delivered cases (adopt, as top_k deserves)', async () => {
    const { report } = await run(true);
    assert.deepEqual([report.decision.adopt, report.decision.reason], [true, 'meets_gate']);
    assert.equal(report.statistics.paired.both_pass + report.statistics.paired.candidate_only + report.statistics.paired.baseline_only + report.statistics.paired.neither, 60);
    assert.equal(report.incomplete?.decided_on_delivered, true);
  });
});

describe('progress line', () => {
  it('says "waiting for workers" while no worker is alive', () => {
    let out = '';
    const stream = { isTTY: true, columns: 100, write: (s: string) => ((out += s), true) } as unknown as NodeJS.WriteStream;
    const p = createProgress(stream, 0);
    p.update(0, 40);
    p.waiting(true);
    assert.match(out, /0\/40 cases {2}waiting for workers/);
    p.waiting(false);
    p.update(40, 40);
    assert.match(out.slice(out.lastIndexOf('\r')), /40\/40 cases {2}\d+\/s/);
  });
});

describe('through Redis', { skip: redisAvailable() ? false : 'redis-server is not installed', concurrency: false }, () => {
  let redis: RedisServer;
  let client: Redis;
  before(async () => {
    redis = await startRedis();
    client = new Redis({ port: redis.port, lazyConnect: true });
    await client.connect();
  });
  after(async () => {
    killAllWorkers();
    client?.disconnect();
    await redis?.stop();
  });

  const config = (extra: object = {}) => ({
    backend: 'redis',
    connection: { host: '127.0.0.1', port: redis.port },
    queue: `t_${randomUUID().slice(0, 8)}`,
    lease_seconds: 5,
    heartbeat_check_interval: 0.25,
    heartbeat_timeout: 3,
    batch_size: 5,
    ...extra,
  });
  /** Keys of the queue that would make a later worker run something for nobody. */
  async function leftovers(queue: string): Promise<{ pending: number; inflight: number; delayed: number; batches: string[]; jobs: string[]; results: string[] }> {
    const p = `mg:{${queue}}:`;
    let pending = 0;
    for (const pr of ['critical', 'high', 'normal', 'low']) pending += await client.llen(p + 'pending:' + pr);
    return {
      pending,
      inflight: await client.zcard(p + 'inflight'),
      delayed: await client.zcard(p + 'delayed'),
      batches: await client.keys(p + 'batch:*'),
      jobs: await client.keys(p + 'job:*'),
      results: await client.keys(p + 'results:*'),
    };
  }
  const stopWorker = async (w: WorkerProcess) => {
    w.child.kill('SIGTERM');
    await w.exited;
  };

  it('a coordinator whose hmac_key differs from the workers\': verdict withheld, exit 2, report written as incomplete', async () => {
    const qc = config({ hmac_key: 'coordinator-key', max_requeue_attempts: 0 });
    const worker = spawnWorker({ ...qc, hmac_key: 'worker-key' });
    try {
      const dir = freshDir('hmac');
      const r = await runCli(['evaluate', '--task', slowTask, '--baseline', fixture('slow/baseline.mjs'), '--candidate', fixture('slow/candidate.mjs'), '--n', '20', '--queue-config', JSON.stringify(qc), '--log-level', 'error', '--report-dir', dir]);
      assert.equal(r.code, 2, describeRun(r));
      assert.deepEqual(errorLines(r), [
        'metaguard: verdict withheld: 20 of 20 cases were not delivered (batch dead-lettered with a signature this coordinator cannot verify (is hmac_key the same on coordinator and workers?): MG_ERR_HMAC: batch signature does not match (tampered or wrong hmac_key); gave up after 0 resends); the report is written; --allow-incomplete decides on the delivered cases',
      ]);
      assert.match(r.stdout, /^slow: verdict WITHHELD \(incomplete\)$/m);
      const report = onlyReport(dir);
      assert.equal(report.decision.adopt, false);
      assert.equal(report.decision.reason, 'incomplete');
      assert.equal(report.incomplete?.undelivered_cases, 20);

      const allowed = await runCli(['evaluate', '--task', slowTask, '--baseline', fixture('slow/baseline.mjs'), '--candidate', fixture('slow/candidate.mjs'), '--n', '20', '--queue-config', JSON.stringify(qc), '--log-level', 'error', '--allow-incomplete', '--report-dir', freshDir('hmac-allowed')]);
      assert.equal(allowed.code, 1, `--allow-incomplete decides (on no delivered case: reject), never exit 2\n${describeRun(allowed)}`);
    } finally {
      await stopWorker(worker);
    }
  });

  it('no worker alive: exit 2 after --no-worker-timeout-s naming the queue and address; the job is withdrawn', async () => {
    const qc = config();
    const started = Date.now();
    const r = await runCli(['evaluate', '--task', slowTask, '--baseline', fixture('slow/baseline.mjs'), '--candidate', fixture('slow/candidate.mjs'), '--n', '100', '--queue-config', JSON.stringify(qc), '--no-worker-timeout-s', '2', '--log-level', 'error', '--report-dir', freshDir('noworker')]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(
      r.stderr,
      new RegExp(`^metaguard: no worker has been alive for 2 s \\(--no-worker-timeout-s\\); job [0-9a-f-]{36} withdrawn from queue "${qc.queue}" on redis 127\\.0\\.0\\.1:${redis.port} \\(\\d+ pending batches removed\\)\n$`),
    );
    assert.ok(Date.now() - started < 30_000, `took ${Date.now() - started} ms`);
    assert.deepEqual(await leftovers(qc.queue), { pending: 0, inflight: 0, delayed: 0, batches: [], jobs: [], results: [] });
  });

  it('--deadline-s through the queue: exit 2, the job withdrawn', async () => {
    const qc = config();
    const r = await runCli(['evaluate', '--task', slowTask, '--baseline', fixture('slow/baseline.mjs'), '--candidate', fixture('slow/candidate.mjs'), '--n', '100', '--queue-config', JSON.stringify(qc), '--no-worker-timeout-s', '0', '--deadline-s', '10', '--log-level', 'error', '--report-dir', freshDir('qdeadline')]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, new RegExp(`^metaguard: --deadline-s 10 passed with 0 of 200 cases done; job [0-9a-f-]{36} withdrawn from queue "${qc.queue}" on redis 127\\.0\\.0\\.1:${redis.port} \\(\\d+ pending batches removed\\)\n$`));
    assert.deepEqual(await leftovers(qc.queue), { pending: 0, inflight: 0, delayed: 0, batches: [], jobs: [], results: [] });
  });

  it('SIGTERM while waiting for workers: exit 143, the job withdrawn', async () => {
    const qc = config();
    const cli = startCli(['evaluate', '--task', slowTask, '--baseline', fixture('slow/baseline.mjs'), '--candidate', fixture('slow/candidate.mjs'), '--n', '100', '--queue-config', JSON.stringify(qc), '--log-json', '--report-dir', freshDir('term')], tmp);
    await until('the coordinator to wait for workers', () => cli.stderr().includes('"heartbeat_timeout"'), 60_000);
    cli.child.kill('SIGTERM');
    const r = await cli.done;
    assert.equal(r.code, 143, describeRun(r));
    assert.match(errorLines(r).join('\n'), new RegExp(`^metaguard: interrupted by SIGTERM with 0 of 200 cases done; job [0-9a-f-]{36} withdrawn from queue "${qc.queue}" on redis 127\\.0\\.0\\.1:${redis.port} \\(\\d+ pending batches removed\\)$`));
    assert.deepEqual(await leftovers(qc.queue), { pending: 0, inflight: 0, delayed: 0, batches: [], jobs: [], results: [] });
  });

  it('SIGINT mid-run: exit 130, the job withdrawn; the worker drops the batch it holds; a later worker finds nothing', async () => {
    const qc = config({ batch_size: 2 });
    const worker = spawnWorker(qc, { args: ['--threads', '1'] });
    try {
      const cli = startCli(['evaluate', '--task', slowTask, '--baseline', v('slow-solve.mjs'), '--candidate', v('slow-solve.mjs'), '--n', '100', '--queue-config', JSON.stringify(qc), '--log-json', '--report-dir', freshDir('int')], tmp);
      // Interrupt once the worker holds a batch.
      await until('a batch in flight', async () => (await client.zcard(`mg:{${qc.queue}}:inflight`)) > 0, 60_000);
      cli.child.kill('SIGINT');
      const r = await cli.done;
      assert.equal(r.code, 130, describeRun(r));
      assert.match(errorLines(r).join('\n'), new RegExp(`^metaguard: interrupted by SIGINT with \\d+ of 200 cases done; job [0-9a-f-]{36} withdrawn from queue "${qc.queue}" on redis 127\\.0\\.0\\.1:${redis.port} \\(\\d+ pending batches removed\\)$`));
      // The batch the worker held: its lease is revoked, the worker notices and drops it (no results stored).
      await until('the worker to drop the withdrawn batch', () => worker.output().includes('"job_withdrawn"'), 30_000);
      await new Promise((res) => setTimeout(res, 1500));
      assert.deepEqual(await leftovers(qc.queue), { pending: 0, inflight: 0, delayed: 0, batches: [], jobs: [], results: [] });
      assert.equal(await client.hlen(`mg:{${qc.queue}}:dead`), 0, 'nothing dead-lettered');
    } finally {
      await stopWorker(worker);
    }
  });

  it('a worker that cannot load the job\'s modules: exit 2 with the worker\'s message, the job withdrawn, nothing dead-lettered', async () => {
    const qc = config();
    const worker = spawnWorker(qc, { args: ['--threads', '1'] });
    try {
      const r = await runCli(['evaluate', '--task', slowTask, '--baseline', fixture('slow/baseline.mjs'), '--candidate', v('fails-on-worker.mjs'), '--n', '40', '--queue-config', JSON.stringify(qc), '--log-level', 'error', '--report-dir', freshDir('workerload')]);
      assert.equal(r.code, 2, describeRun(r));
      assert.match(
        r.stderr,
        new RegExp(`^metaguard: candidate ${v('fails-on-worker.mjs').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} on worker \\S+: failed to load: cannot load on a worker; job [0-9a-f-]{36} withdrawn from queue "${qc.queue}" on redis 127\\.0\\.0\\.1:${redis.port}( \\(\\d+ pending batches removed\\))?\n$`),
      );
      assert.equal(await client.hlen(`mg:{${qc.queue}}:dead`), 0, 'no batch dead-lettered');
    } finally {
      await stopWorker(worker);
    }
  });
});
