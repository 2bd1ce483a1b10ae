/** `metaguard bench --json`: one object with the codec rows, the sweep and the recommendation. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from './helpers/run-cli.ts';
import { recommendBatchSize } from '../src/bench/sweep.ts';

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
  const r = await runCli(['bench', '--skip-codec', '--n', '100', '--sizes', '10', '--workers', '1'], { timeoutMs: 120_000 });
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
