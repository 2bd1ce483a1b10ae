/** `metaguard bench --json`: one object with the codec rows, the throughput rows, the sweep and the recommendation; `--task/--baseline/--candidate`; the edge warning. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from './helpers/run-cli.ts';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { recommendBatchSize, recommendationAtEdge } from '../src/bench/sweep.ts';

const root = fileURLToPath(new URL('..', import.meta.url));

it('bench --json prints codec rows, a sweep over the given sizes and a recommended size', async () => {
  const r = await runCli(['bench', '--json', '--n', '200', '--sizes', '5,50', '--codec-time-ms', '150', '--workers', '1'], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as {
    codec: { impl: string; op: string; ops_per_sec: number; bytes_per_sec: number }[];
    sweep: { batch_size: number; cases_per_sec: number }[];
    recommended_batch_size: number;
  };
  assert.ok(out.codec.some((c) => c.impl === 'js' && c.op === 'encode'));
  assert.ok(out.codec.some((c) => c.impl === 'js' && c.op === 'decode'));
  for (const c of out.codec) assert.ok(c.ops_per_sec > 0 && c.bytes_per_sec > 0, JSON.stringify(c));
  assert.deepEqual(out.sweep.map((s) => s.batch_size), [5, 50]);
  for (const s of out.sweep) assert.ok(s.cases_per_sec > 0);
  assert.ok([5, 50].includes(out.recommended_batch_size));
});

it('the text output ends with a line to paste into the environment file', async () => {
  const r = await runCli(['bench', '--skip-codec', '--skip-throughput', '--n', '100', '--sizes', '10', '--workers', '1'], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.trim().split('\n').at(-1)!, /^METAGUARD_BATCH_SIZE=10$/);
});

it('bad --sizes gets one line naming the flag and exit 2', async () => {
  const r = await runCli(['bench', '--sizes', '5,x']);
  assert.equal(r.code, 2);
  assert.match(r.stderr.trim(), /^metaguard: --sizes: /);
  assert.equal(r.stderr.trim().split('\n').length, 1);
});

it('recommends the smallest size within 5% of the best', () => {
  assert.equal(recommendBatchSize([{ batch_size: 1, cases_per_sec: 100 }, { batch_size: 10, cases_per_sec: 960 }, { batch_size: 100, cases_per_sec: 1000 }]), 10);
  assert.equal(recommendBatchSize([{ batch_size: 100, cases_per_sec: 1000 }, { batch_size: 10, cases_per_sec: 900 }]), 100);
});

it('bench --task/--baseline/--candidate measures that workload: the limit, local and memory rows, and the sweep', async () => {
  const sortTask = join(root, 'bench', 'fixtures', 'sort', 'task.mjs');
  const slow = join(root, 'test', 'fixtures', 'slow-sort.mjs');
  const r = await runCli(['bench', '--json', '--skip-codec', '--n', '100', '--sizes', '5,50', '--workers', '1', '--task', sortTask, '--baseline', slow, '--candidate', slow], { timeoutMs: 180_000 });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as {
    throughput: { path: string; cases_per_sec: number; share_of_limit: number }[];
    sweep: { batch_size: number; cases_per_sec: number }[];
    recommended_batch_size: number;
    recommendation_at_edge: string | null;
  };
  assert.equal(out.throughput.length, 3, JSON.stringify(out.throughput));
  assert.match(out.throughput[0].path, /^limit/);
  assert.equal(out.throughput[0].share_of_limit, 1);
  assert.match(out.throughput[1].path, /^local/);
  assert.match(out.throughput[2].path, /^queue: memory/);
  for (const row of out.throughput) assert.ok(row.cases_per_sec > 0, JSON.stringify(row));
  // Three calls of 1 ms per case: a few hundred cases/s at most, where the built-in sum runs at tens of thousands.
  assert.ok(out.throughput[0].cases_per_sec < 2000, `the limit row did not run the given workload: ${JSON.stringify(out.throughput[0])}`);
  assert.deepEqual(out.sweep.map((s) => s.batch_size), [5, 50]);
  assert.equal(out.recommendation_at_edge, recommendationAtEdge(out.sweep, out.recommended_batch_size));
});

it('a task file without --baseline gets one line naming the flag and exit 2', async () => {
  const r = await runCli(['bench', '--skip-codec', '--task', join(root, 'bench', 'fixtures', 'sort', 'task.mjs')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr.trim(), /^metaguard: --baseline: is required with --task /);
  assert.equal(r.stderr.trim().split('\n').length, 1);
});

it('warns on stderr when the recommended size is at the edge of the sweep', async () => {
  const r = await runCli(['bench', '--skip-codec', '--skip-throughput', '--n', '100', '--sizes', '10', '--workers', '1'], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning: the recommended batch size 10 is the largest size of the sweep; throughput may still grow past it/);
});

it('says where the recommendation lies in the sweep', () => {
  const row = (batch_size: number, cases_per_sec: number) => ({ batch_size, cases_per_sec });
  assert.equal(recommendationAtEdge([row(10, 100), row(100, 200), row(500, 201)], 100), null);
  assert.equal(recommendationAtEdge([row(10, 100), row(100, 200), row(500, 400)], 500), 'largest');
  assert.equal(recommendationAtEdge([row(10, 400), row(100, 401)], 10), 'smallest');
});
