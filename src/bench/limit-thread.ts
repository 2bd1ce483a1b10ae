/**
 * Worker-thread entry of the bench's limit row (src/bench/throughput.ts): the case work of a task and
 * one implementation in a tight loop — the implementation, the properties, the transforms and the
 * comparisons, with no copies beyond a `slice` of each array argument (so an implementation that
 * sorts in place leaves the arguments as the task made them), no timing, no results, no isolation.
 * What one thread can do at most; runs in its own thread so user code stays out of the CLI's.
 *
 * Alternately, the same cases through the case thread's chunk runner (`runCases`, as a case thread
 * runs them, results discarded): rounds of one pass each, the best pass of each kept, so a burst of
 * load elsewhere on the machine does not land on one side only.
 */
import { isDeepStrictEqual } from 'node:util';
import { workerData, parentPort } from 'node:worker_threads';
import { importModule, validateImplementation, validateTask } from '../task/load.js';
import { relationRng } from '../util/rng.js';
import type { ThreadMessage } from '../execution/protocol.js';

interface Request {
  taskUrl: string;
  implUrl: string;
  n: number;
  seed: number;
  /** Measuring time, ms: rounds run until at least this much has passed (and at least 3 rounds). */
  minMs: number;
}

const req = workerData as Request;
const task = validateTask((await importModule(req.taskUrl)).default, req.taskUrl);
const solve = validateImplementation(await importModule(req.implUrl), req.implUrl);
const cases = task.gen(req.n, req.seed);
const equivalent = task.equivalence ?? isDeepStrictEqual;
const own = (args: unknown[]) => args.map((a) => (Array.isArray(a) ? a.slice() : a));

function pass(): number {
  let ok = 0;
  for (let i = 0; i < cases.length; i++) {
    const args = cases[i];
    let passed = true;
    try {
      const out = solve(...own(args));
      for (const p of task.properties) if ((p.mode ?? 'hard') === 'hard' && p.check(out, ...args) !== true) passed = false;
      for (let r = 0; r < task.relations.length; r++) {
        const relation = task.relations[r];
        const follow = relation.transform(own(args), relationRng(req.seed, i, r));
        const again = solve(...follow);
        const expect = relation.expect ?? 'equal';
        if (expect === 'equal' && equivalent(out, again) !== true) passed = false;
        else if (expect === 'not_equal' && equivalent(out, again) === true) passed = false;
        else if (expect === 'properties_hold') for (const p of task.properties) if ((p.mode ?? 'hard') === 'hard' && p.check(again, ...follow) !== true) passed = false;
      }
    } catch {
      passed = false;
    }
    if (passed) ok++;
  }
  return ok;
}

const { runCases } = await import('../case-runner/case-thread.js');
const inputs = cases.map((args, index) => ({ index, args }));
let failed = 0;
const post = (m: ThreadMessage) => {
  if (m.t === 'results') for (const r of m.results) if (!r.passed) failed++;
};
async function runnerPass(): Promise<void> {
  for (let i = 0; i < inputs.length; i += 500) {
    await runCases({ taskUrl: req.taskUrl, implUrl: req.implUrl, seed: req.seed, timeoutMs: 60_000, cases: inputs.slice(i, i + 500), token: 'bench' }, post, { threadId: 0, flushMs: 2 });
  }
}

const time = async (f: () => unknown) => {
  const started = performance.now();
  await f();
  return ((performance.now() - started) * 1000) / cases.length;
};
// Warm-up (JIT) of both.
pass();
await runnerPass();
const passing = pass();
failed = 0;
let loopUs = Infinity;
let runnerUs = Infinity;
const started = performance.now();
for (let round = 0; round < 3 || performance.now() - started < req.minMs; round++) {
  loopUs = Math.min(loopUs, await time(pass));
  runnerUs = Math.min(runnerUs, await time(runnerPass));
}
parentPort!.postMessage({ usPerCase: loopUs, runnerUsPerCase: runnerUs, loopPassed: passing, runnerFailed: failed });
