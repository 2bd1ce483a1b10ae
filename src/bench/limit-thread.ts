/**
 * Worker-thread entry of the bench's limit row (src/bench/throughput.ts): the case work of a task and
 * one implementation in a tight loop — the implementation, the properties, the transforms and the
 * comparisons, with no copies beyond a `slice` of each array argument (so an implementation that
 * sorts in place leaves the arguments as the task made them), no timing, no results, no isolation.
 * What one thread can do at most; runs in its own thread so user code stays out of the CLI's.
 */
import { isDeepStrictEqual } from 'node:util';
import { workerData, parentPort } from 'node:worker_threads';
import { importModule, validateImplementation, validateTask } from '../task/load.js';
import { relationRng } from '../util/rng.js';

interface Request {
  taskUrl: string;
  implUrl: string;
  n: number;
  seed: number;
  /** Measuring time, ms: the loop runs over the cases until at least this much has passed. */
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

pass(); // warm-up (JIT)
let done = 0;
const started = performance.now();
do {
  pass();
  done += cases.length;
} while (performance.now() - started < req.minMs);
parentPort!.postMessage({ usPerCase: ((performance.now() - started) * 1000) / done });
