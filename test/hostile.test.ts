/**
 * Hostile candidates must not move the verdict (src/execution/thread-guard.ts, src/case-runner/*).
 *
 * Every candidate in test/fixtures/hostile returns wrong output (its input, unsorted), as `wrong.mjs`
 * does honestly, and then tries to be adopted anyway against a baseline that passes 69% (properties)
 * or 31.5% (relations) of the cases:
 * - push.mjs, every-override.mjs, proto-getters.mjs: tamper with the intrinsics the checks and the
 *   runner use (`Array.prototype.push`, `every`, getters on Object.prototype for `mode` and
 *   `equivalence`);
 * - lying-output.mjs: returns an Array subclass or a Proxy whose `every` says yes;
 * - builtin-exports.mjs: replaces `util.isDeepStrictEqual` and syncs builtin ESM exports;
 * - task-module.mjs: imports the task's bundle and rewrites its checks;
 * - intercept.mjs: reads each chunk's token off the messages reaching its thread or process and
 *   reports the chunk's cases as passed;
 * - bundle-writer.mjs: overwrites the other bundles in the cache (the baseline's among them).
 * Each was adopted before the realm was locked (or, for bundle-writer, could make the baseline fail).
 * Now each is refused at load (it cannot assign a frozen intrinsic: exit 2, MG_ERR_MODULE_LOAD) or
 * judged on its real output (rejected, no better than wrong.mjs), and a correct candidate is still
 * adopted.
 *
 * Run: node --import tsx --test test/hostile.test.ts
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { bundleModule } from '../src/task/bundle.ts';
import { CasePool } from '../src/execution/pool.ts';
import { fixture, killAllWorkers, localReport, queueReport, spawnWorker, type RunOptions } from './helpers/queue-harness.ts';
import { redisAvailable, startRedis, type RedisServer } from './helpers/redis-server.ts';
import type { Report } from '../src/reports/types.ts';

const hostile = (name: string) => fixture(`hostile/${name}.mjs`);

type Outcome = { loadError: string } | { report: Report };

async function outcome(run: RunOptions, via: (run: RunOptions) => Promise<Report> = localReport): Promise<Outcome> {
  try {
    return { report: await via(run) };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    assert.equal(e.code, 'MG_ERR_MODULE_LOAD', `only a load failure may stop the run: ${e.message}`);
    return { loadError: e.message ?? '' };
  }
}

/** Not adopted, and judged no better than the honest wrong candidate. */
function assertNotMoved(o: Outcome, honestRate: number, what: string): void {
  if ('loadError' in o) {
    assert.match(o.loadError, /candidate .*failed to load: TypeError: Cannot (assign|define|redefine|add)/, what);
    return;
  }
  const { report } = o;
  assert.equal(report.decision.adopt, false, `${what}: adopted (${JSON.stringify(report.candidate)})`);
  assert.ok(report.candidate.pass_rate <= honestRate, `${what}: candidate pass rate ${report.candidate.pass_rate} > ${honestRate} (the same output, honestly)`);
}

const props = (candidate: string, extra: Partial<RunOptions> = {}): RunOptions => ({ task: hostile('props-task'), baseline: hostile('baseline'), candidate: hostile(candidate), n: 80, ...extra });
const relations = (candidate: string, extra: Partial<RunOptions> = {}): RunOptions => ({ task: hostile('relations-task'), baseline: hostile('baseline'), candidate: hostile(candidate), n: 80, ...extra });

describe('hostile candidates, local dispatcher', () => {
  let honest: { props: number; relations: number };
  before(async () => {
    const p = await localReport(props('wrong'));
    const r = await localReport(relations('wrong'));
    honest = { props: p.candidate.pass_rate, relations: r.candidate.pass_rate };
  });

  it('controls: the honest wrong candidate is rejected, a correct one adopted', async () => {
    assert.equal(honest.props, 0);
    assert.equal(honest.relations, 0);
    const good = await localReport(props('good'));
    assert.equal(good.decision.adopt, true, JSON.stringify(good.decision));
    assert.ok(good.baseline.pass_rate > 0.5 && good.baseline.pass_rate < 0.9, `baseline ${good.baseline.pass_rate}`);
  });

  for (const isolation of ['thread', 'process'] as const) {
    for (const c of ['push', 'every-override', 'proto-getters', 'lying-output', 'task-module', 'intercept']) {
      it(`${c} (properties task, --isolation ${isolation})`, async () => {
        assertNotMoved(await outcome(props(c, { isolation })), honest.props, c);
      });
    }
    for (const c of ['proto-getters', 'builtin-exports', 'task-module', 'intercept']) {
      it(`${c} (relations task, --isolation ${isolation})`, async () => {
        assertNotMoved(await outcome(relations(c, { isolation })), honest.relations, c);
      });
    }
  }

  it('an output that is not data fails its case with E_OUTPUT, and checks never see the original', async () => {
    const pool = new CasePool({ threads: 1, timeoutMs: 5000, memMb: 128 });
    try {
      const dir = mkdtempSync(join(tmpdir(), 'mg-output-'));
      const impl = join(dir, 'fn.mjs');
      writeFileSync(impl, 'export function solve(xs) { return xs.length > 1 ? () => xs : Symbol("x"); }\n');
      const results = await pool.runChunk({
        taskUrl: pathToFileURL(hostile('props-task')).href,
        implUrl: pathToFileURL(impl).href,
        seed: 1,
        cases: [
          { index: 0, args: [[2, 1]] },
          { index: 1, args: [[1]] },
        ],
      });
      assert.deepEqual(
        results.map((r) => [r.index, r.passed, r.error?.code]),
        [
          [0, false, 'E_OUTPUT'],
          [1, false, 'E_OUTPUT'],
        ],
      );
      assert.match(results[0].error!.message, /the output is not data/);
      rmSync(dir, { recursive: true, force: true });
    } finally {
      await pool.close();
    }
  });
});

describe('module bundles on disk', () => {
  it('a bundle rewritten after it was written fails to load in a case thread, and bundling again repairs it', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'mg-bundles-'));
    const pool = new CasePool({ threads: 1, timeoutMs: 5000, memMb: 128 });
    try {
      const task = await bundleModule(hostile('props-task'), 'task', cache);
      const good = await bundleModule(hostile('good'), 'candidate', cache);
      const file = join(cache, 'bundles', `${good.sha256}.mjs`);
      writeFileSync(file, 'export function solve() { throw new Error("sabotaged"); }\n');
      const results = await pool.runChunk({ taskUrl: task.url, implUrl: good.url, seed: 1, cases: [{ index: 0, args: [[2, 1]] }] });
      assert.equal(results[0].error?.code, 'MG_ERR_MODULE_LOAD', JSON.stringify(results));
      assert.match(results[0].error!.message, /was modified after it was written/);
      const again = await bundleModule(hostile('good'), 'candidate', cache);
      assert.equal(again.sha256, good.sha256);
      assert.doesNotMatch(readFileSync(file, 'utf8'), /sabotaged/);
      assert.deepEqual(readdirSync(join(cache, 'bundles')).filter((f) => f.endsWith('.tmp')), []);
    } finally {
      await pool.close();
      rmSync(cache, { recursive: true, force: true });
    }
  });
});

describe('hostile candidates through Redis', { skip: redisAvailable() ? false : 'redis-server is not installed', concurrency: false }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    killAllWorkers();
    await redis?.stop();
  });

  it('intercept, proto-getters and push on a worker: not adopted', async () => {
    const qc = { backend: 'redis', connection: { host: '127.0.0.1', port: redis.port }, queue: `hostile_${randomUUID().slice(0, 8)}`, lease_seconds: 5, heartbeat_check_interval: 0.25, batch_size: 10, hmac_key: 'k-hostile' };
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    try {
      for (const c of ['intercept', 'proto-getters', 'push']) {
        assertNotMoved(await outcome(props(c), (run) => queueReport(run, qc)), 0, `${c} via Redis`);
      }
      assertNotMoved(await outcome(relations('intercept'), (run) => queueReport(run, qc)), 0, 'intercept via Redis (relations)');
    } finally {
      w.child.kill('SIGTERM');
      assert.equal((await w.exited).code, 0, w.output());
    }
  });
});
