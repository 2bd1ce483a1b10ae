/**
 * Hostile candidates must not move the verdict (src/case-runner/realm-lock.ts, case-thread.ts,
 * src/execution/thread-guard.ts, src/task/bundle.ts).
 *
 * Every candidate in test/fixtures/hostile returns wrong output (its input, unsorted, as `wrong.mjs`
 * does honestly) or worse output than the baseline, which passes 69% (properties task) or 31.5%
 * (relations task) of the cases, and then tries to be adopted anyway. Each of the attacks below was
 * adopted at 100% (or could make the baseline fail) before this change.
 *
 * Under --isolation process (the realm is locked before user code loads):
 * - push, every-override, proto-getters: tamper with the intrinsics the checks and the runner use;
 * - lying-output: an Array subclass or a Proxy whose `every` says yes;
 * - builtin-exports: replaces `util.isDeepStrictEqual` and re-syncs builtin ESM exports;
 * - task-module: imports the task's bundle and rewrites its checks;
 * - heap-snapshot: finds the runner's private task URL in a heap snapshot and rewrites its checks;
 * - output-toctou: an output whose elements answer differently to a second read (the copy reads once);
 * - intercept, ipc-nexttick, ipc-listenercount, ipc-onread: read each chunk's token off the IPC path
 *   (a 'message' listener, `process.nextTick`, `listenerCount`, the pipe handle's `onread`) and send
 *   the chunk's results themselves, or rewrite `process._send`; mutate-args sorts the arguments of
 *   each request before the runner sees it.
 * Each is refused at load (exit 2, MG_ERR_MODULE_LOAD naming the assignment) or judged on what it
 * returned. A correct candidate written with ordinary habits (ordinary.mjs) is still adopted.
 *
 * Under --isolation thread: forge-thread (reads each chunk's token where piscina receives it and posts
 * the chunk's results itself) is judged on its output.
 *
 * In both modes: builtin-exports (the runner keeps its own `isDeepStrictEqual`), task-module (the
 * runner's task instance is private and its spec a frozen copy), bundle-writer (a bundle rewritten
 * on disk fails to load; bundling again writes it again), claims-load-error (MG_ERR_MODULE_LOAD or
 * E_DELIVERY on an error an implementation throws is E_THROW: it cannot turn its rejection into a
 * run error). Under --isolation thread an implementation can still replace the built-ins its own
 * checks use (docs/operations.md, section 9).
 *
 * Run: node --import tsx --test test/hostile.test.ts
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { bundleModule } from '../src/task/bundle.ts';
import { CasePool } from '../src/execution/pool.ts';
import { fixture, localReport, queueReport, redisSuite, type RunOptions, spawnWorker } from './helpers/queue-harness.ts';
import { redisAvailable } from './helpers/redis-server.ts';
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

/** Refused at load for assigning a locked built-in, or not adopted and no better than honest wrong output. */
function assertNotMoved(o: Outcome, honestRate: number, what: string, loadErrorAllowed: boolean): void {
  if ('loadError' in o) {
    assert.ok(loadErrorAllowed, `${what}: the run stopped instead of judging: ${o.loadError}`);
    assert.match(o.loadError, /candidate .*failed to load: TypeError: Cannot (assign to read only|define property|redefine|add property)/, what);
    return;
  }
  const { report } = o;
  assert.equal(report.decision.adopt, false, `${what}: adopted (${JSON.stringify(report.candidate)})`);
  assert.ok(report.candidate.pass_rate <= honestRate, `${what}: candidate pass rate ${report.candidate.pass_rate} > ${honestRate} (the same output, honestly)`);
}

// Each run bundles into a cache of its own: an attack that imports or rewrites every bundle in its
// folder must meet only this run's, and never the user's cache.
const caches: string[] = [];
const freshCache = () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-hostile-'));
  caches.push(dir);
  return dir;
};
after(() => {
  for (const dir of caches) rmSync(dir, { recursive: true, force: true });
});
const props = (candidate: string, extra: Partial<RunOptions> = {}): RunOptions => ({ task: hostile('props-task'), baseline: hostile('baseline'), candidate: hostile(candidate), n: 80, cacheDir: freshCache(), ...extra });
const relations = (candidate: string, extra: Partial<RunOptions> = {}): RunOptions => ({ task: hostile('relations-task'), baseline: hostile('baseline'), candidate: hostile(candidate), n: 80, cacheDir: freshCache(), ...extra });

describe('hostile candidates, local dispatcher', () => {
  let honest: { props: number; relations: number };
  before(async () => {
    const p = await localReport(props('wrong'));
    const r = await localReport(relations('wrong'));
    honest = { props: p.candidate.pass_rate, relations: r.candidate.pass_rate };
  });

  it('controls: the honest wrong candidate is rejected; correct ones, ordinary habits included, are adopted in both modes', async () => {
    assert.equal(honest.props, 0);
    assert.equal(honest.relations, 0);
    for (const isolation of ['thread', 'process'] as const) {
      for (const c of ['good', 'ordinary']) {
        const report = await localReport(props(c, { isolation }));
        assert.equal(report.decision.adopt, true, `${c} --isolation ${isolation}: ${JSON.stringify(report.decision)} ${JSON.stringify(report.candidate)}`);
        assert.ok(report.baseline.pass_rate > 0.5 && report.baseline.pass_rate < 0.9, `baseline ${report.baseline.pass_rate}`);
      }
    }
  });

  describe('--isolation process (locked realm)', () => {
    for (const c of ['push', 'every-override', 'proto-getters', 'lying-output', 'output-toctou', 'task-module', 'heap-snapshot', 'intercept', 'ipc-nexttick', 'ipc-listenercount', 'ipc-onread', 'mutate-args', 'claims-load-error']) {
      it(`${c} (properties task)`, async () => {
        assertNotMoved(await outcome(props(c, { isolation: 'process' })), honest.props, c, true);
      });
    }
    for (const c of ['proto-getters', 'builtin-exports', 'output-toctou', 'task-module', 'heap-snapshot', 'intercept', 'ipc-nexttick']) {
      it(`${c} (relations task)`, async () => {
        assertNotMoved(await outcome(relations(c, { isolation: 'process' })), honest.relations, c, true);
      });
    }
  });

  describe('--isolation thread', () => {
    it('builtin-exports (relations task): judged with the real isDeepStrictEqual', async () => {
      assertNotMoved(await outcome(relations('builtin-exports')), honest.relations, 'builtin-exports', false);
    });
    it('forge-thread (properties task): cannot read a chunk\'s token to forge its results', async () => {
      assertNotMoved(await outcome(props('forge-thread')), honest.props, 'forge-thread', false);
    });
    it('task-module (properties and relations tasks): the runner does not run the rewritten checks', async () => {
      assertNotMoved(await outcome(props('task-module')), honest.props, 'task-module', false);
      assertNotMoved(await outcome(relations('task-module')), honest.relations, 'task-module', false);
    });
  });

  for (const isolation of ['thread', 'process'] as const) {
    it(`claims-load-error: rejected with E_THROW, not a run error (--isolation ${isolation})`, async () => {
      const o = await outcome(props('claims-load-error', { isolation }));
      assertNotMoved(o, honest.props, 'claims-load-error', false);
      const errors = 'report' in o ? o.report.candidate.errors : {};
      assert.deepEqual(Object.keys(errors), ['E_THROW'], JSON.stringify(errors));
    });
  }

  it('bundle-writer: the baseline it rewrote fails to load (exit 2), or ran intact; a worse candidate is never adopted', async () => {
    const o = await outcome(props('bundle-writer'));
    if ('loadError' in o) assert.match(o.loadError, /was modified after it was written/);
    else {
      assert.equal(o.report.decision.adopt, false, JSON.stringify(o.report.decision));
      assert.ok(o.report.baseline.pass_rate > 0.6, `baseline ${o.report.baseline.pass_rate}`);
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
      const fresh = await pool.runChunk({ taskUrl: pathToFileURL(hostile('props-task')).href, implUrl: pathToFileURL(hostile('good')).href, seed: 1, cases: [{ index: 0, args: [[2, 1]] }] });
      assert.equal(fresh[0].passed, true, JSON.stringify(fresh));
    } finally {
      await pool.close();
      rmSync(cache, { recursive: true, force: true });
    }
  });
});

describe('hostile candidates through Redis', { skip: redisAvailable() ? false : 'redis-server is not installed', concurrency: false }, () => {
  const redis = redisSuite();

  it('on a worker with --isolation process: intercept, proto-getters, heap-snapshot and claims-load-error move nothing', async () => {
    const qc = redis.queueConfig('hostile', { lease_seconds: 5, heartbeat_check_interval: 0.25, batch_size: 10, hmac_key: 'k-hostile' });
    const w = spawnWorker(qc, { args: ['--threads', '2', '--isolation', 'process'] });
    try {
      for (const c of ['intercept', 'proto-getters', 'heap-snapshot', 'claims-load-error']) {
        assertNotMoved(await outcome(props(c), (run) => queueReport(run, qc)), 0, `${c} via Redis`, true);
      }
      assertNotMoved(await outcome(relations('intercept'), (run) => queueReport(run, qc)), 0, 'intercept via Redis (relations)', true);
    } finally {
      w.child.kill('SIGTERM');
      assert.equal((await w.exited).code, 0, w.output());
    }
  });
});
