/**
 * Separate realms and secrets out of reach (src/execution/pools.ts, env.ts, thread-guard.ts):
 * - a candidate that replaces Array.prototype.sort cannot make the baseline fail, locally and through
 *   Redis (baseline and candidate never share a thread);
 * - a worker's threads do not carry an implementation's state from one job into the next;
 * - case threads see no METAGUARD_* variable and none METAGUARD_HIDE_ENV names, cannot import
 *   node:inspector (connectToMainThread would reach the daemon) and cannot signal the process.
 *
 * Run: node --import tsx --test test/isolation.test.ts
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CasePool } from '../src/execution/pool.ts';
import { caseEnvironment, parseHideEnv } from '../src/execution/env.ts';
import { redisAvailable } from './helpers/redis-server.ts';
import { fixture, localReport, queueReport, redisSuite, type RunOptions, spawnWorker } from './helpers/queue-harness.ts';
import type { Report } from '../src/reports/types.ts';

const realm = (name: string) => fixture(`realm/${name}`);
const sabotage: RunOptions = { task: realm('task.mjs'), baseline: realm('baseline.mjs'), candidate: realm('saboteur.mjs'), n: 60 };

function probeOf(report: Report): Record<string, unknown> {
  const v = report.violations.find((x) => typeof x.message === 'string' && x.message.startsWith('probe '));
  assert.ok(v, `a probe result in the report: ${JSON.stringify(report.violations.slice(0, 2))}`);
  return JSON.parse((v.message as string).slice('probe '.length)) as Record<string, unknown>;
}

describe('environment scrubbing (unit)', () => {
  it('drops METAGUARD_* and the names and prefixes METAGUARD_HIDE_ENV lists, keeps the rest', () => {
    const env = caseEnvironment({
      PATH: '/bin',
      HOME: '/home/x',
      METAGUARD_QUEUE_CONFIG: '{"hmac_key":"k"}',
      metaguard_lower: 'x',
      METAGUARD_HIDE_ENV: 'AWS_*, PGPASSWORD',
      AWS_SECRET_ACCESS_KEY: 's',
      AWS_REGION: 'r',
      PGPASSWORD: 'p',
      PGPASSWORD2: 'kept: exact names match exactly',
    });
    assert.deepEqual(Object.keys(env).sort(), ['HOME', 'PATH', 'PGPASSWORD2']);
  });

  it('rejects a malformed METAGUARD_HIDE_ENV entry, naming it', () => {
    assert.deepEqual(parseHideEnv('A_B, C*'), { patterns: ['A_B', 'C*'] });
    const bad = parseHideEnv('GOOD, bad-name');
    assert.ok('error' in bad && /"bad-name"/.test(bad.error), JSON.stringify(bad));
  });
});

describe('case threads (pool)', () => {
  let pool: CasePool;
  before(() => {
    pool = new CasePool({
      threads: 1,
      timeoutMs: 5000,
      memMb: 128,
      env: caseEnvironment({ PATH: process.env.PATH, METAGUARD_QUEUE_CONFIG: '{"hmac_key":"topsecret"}', METAGUARD_HIDE_ENV: 'MY_TOKEN', MY_TOKEN: 'hunter2' }),
    });
  });
  after(() => pool.close());

  it('see a scrubbed environment and cannot reach node:inspector, process bindings or signals', async () => {
    const [r] = await pool.runChunk({ taskUrl: pathToFileURL(realm('task.mjs')).href, implUrl: pathToFileURL(realm('env-probe.mjs')).href, seed: 1, cases: [{ index: 0, args: [[3, 1, 2]] }] });
    assert.equal(r.error?.code, 'E_THROW');
    const seen = JSON.parse(r.error!.message.slice('probe '.length));
    assert.deepEqual(seen, { env: [], values: 0, inspector_import: 'refused', inspector_builtin: 'refused', binding: 'refused', kill: 'refused' });
  });

  it('a case calling process.kill(process.pid, "SIGKILL") does not end this process', async () => {
    const results = await pool.runChunk({
      taskUrl: pathToFileURL(realm('task.mjs')).href,
      implUrl: pathToFileURL(realm('killer.mjs')).href,
      seed: 1,
      cases: [0, 1, 2].map((index) => ({ index, args: [[5, 4, index]] })),
    });
    assert.equal(results.length, 3);
    assert.ok(results.every((r) => r.passed), JSON.stringify(results));
  });
});

describe('separate realms, local dispatcher', () => {
  for (const parallel of [1, 2]) {
    it(`a candidate replacing Array.prototype.sort leaves the baseline intact (--parallel ${parallel})`, async () => {
      const report = await localReport({ ...sabotage, parallel });
      assert.equal(report.baseline.pass_rate, 1, `baseline: ${JSON.stringify(report.baseline)}`);
      assert.equal(report.candidate.pass_rate, 1, `candidate: ${JSON.stringify(report.candidate)}`);
    });
  }
});

describe('separate realms and scrubbed environment through Redis', { skip: redisAvailable() ? false : 'redis-server is not installed', concurrency: false }, () => {
  const redis = redisSuite();
  const config = (extra: object = {}) => redis.queueConfig('iso', { lease_seconds: 5, heartbeat_check_interval: 0.25, batch_size: 10, ...extra });

  for (const threads of ['1', '2']) {
    it(`a sabotaging candidate cannot make the baseline fail (worker --threads ${threads}, hmac_key set)`, async () => {
      const qc = config({ hmac_key: 'topsecret-key' });
      const w = spawnWorker(qc, { args: ['--threads', threads] });
      try {
        const report = await queueReport(sabotage, qc);
        assert.equal(report.baseline.pass_rate, 1, `baseline: ${JSON.stringify(report.baseline)}`);
        assert.equal(report.candidate.pass_rate, 1, `candidate: ${JSON.stringify(report.candidate)}`);
      } finally {
        w.child.kill('SIGTERM');
        assert.equal((await w.exited).code, 0, w.output());
      }
    });
  }

  it("a worker's threads do not carry an implementation's state from one job into the next", async () => {
    const qc = config();
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    try {
      const run: RunOptions = { task: realm('task.mjs'), baseline: realm('baseline.mjs'), candidate: realm('stateful.mjs'), n: 30 };
      const first = await queueReport(run, qc);
      const second = await queueReport({ ...run, seed: 8 }, qc);
      assert.equal(first.candidate.pass_rate, 1, 'first job: 60 calls, all correct');
      assert.equal(second.candidate.pass_rate, 1, `second job ran on fresh threads: ${JSON.stringify(second.candidate)}`);
    } finally {
      w.child.kill('SIGTERM');
      await w.exited;
    }
  });

  it('an implementation on a worker sees no queue config, no hidden variable, no inspector, no kill', async () => {
    const qc = config({ hmac_key: 'topsecret-key' });
    const w = spawnWorker(qc, { args: ['--threads', '2'], env: { METAGUARD_HIDE_ENV: 'MY_TOKEN', MY_TOKEN: 'hunter2' } });
    try {
      const report = await queueReport({ task: realm('task.mjs'), baseline: realm('baseline.mjs'), candidate: realm('env-probe.mjs'), n: 10 }, qc);
      assert.deepEqual(probeOf(report), { env: [], values: 0, inspector_import: 'refused', inspector_builtin: 'refused', binding: 'refused', kill: 'refused' });
    } finally {
      w.child.kill('SIGTERM');
      await w.exited;
    }
  });
});
