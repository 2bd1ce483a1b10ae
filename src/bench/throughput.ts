/**
 * End-to-end throughput rows shared by `metaguard bench` and `npm run bench`: the limit (the case work
 * in a tight loop, one thread, scaled to the threads the paths use), a local evaluation, the embedded
 * memory queue, and a queue backend with workers, each with cases/s (both roles counted) and its share
 * of the limit; for queue rows also the coordinator's CPU per case (this process) and, given their
 * pids, the worker daemons'.
 */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { resolveEvaluateOptions, runEvaluation } from '../evaluate.js';
import { loaderExecArgv } from '../execution/pool.js';
import { runningFromSource } from '../util/paths.js';

export interface Workload {
  /** Task and implementation files (paths), or a built-in task name in `task` alone. */
  task: string;
  baseline?: string;
  candidate?: string;
  /** Cases per role. */
  n: number;
  seed?: number;
}

export interface ThroughputRow {
  path: string;
  threads: number;
  cases: number;
  seconds: number;
  cases_per_sec: number;
  /** cases_per_sec ÷ the limit row's cases/s. */
  share_of_limit: number;
  /** CPU time of this process (the coordinator) per case, µs; queue rows only. */
  coordinator_us_per_case?: number;
  /** CPU time of the worker daemon processes per case, µs (all their threads); when their pids are known. */
  daemon_us_per_case?: number;
  /** The CPU times behind the two figures above, ms (for marginal costs between two runs). */
  coordinator_cpu_ms?: number;
  daemon_cpu_ms?: number;
}

const limitFile = fileURLToPath(new URL(`./limit-thread.${runningFromSource ? 'ts' : 'js'}`, import.meta.url));

/**
 * µs per case of one implementation's case work in a tight loop on one thread (`usPerCase`) and through
 * the case thread's chunk runner on that thread (`runnerUsPerCase`), best of alternating rounds.
 */
export function limitUsPerCase(taskUrl: string, implUrl: string, n: number, seed: number, minMs = 1500): Promise<{ usPerCase: number; runnerUsPerCase: number }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(limitFile, { workerData: { taskUrl, implUrl, n, seed, minMs }, execArgv: runningFromSource ? loaderExecArgv(process.execArgv) : [] });
    w.once('message', (m: { usPerCase: number; runnerUsPerCase: number }) => resolve(m));
    w.once('error', reject);
    w.once('exit', (code) => reject(new Error(`the limit thread exited with ${code}`)));
  });
}

/** Task and implementation URLs of a workload (a built-in task name resolves to its example files). */
export async function workloadUrls(w: Workload): Promise<{ task: string; baseline: string; candidate: string }> {
  if (w.baseline === undefined || w.candidate === undefined) {
    const { builtinTask } = await import('../task/builtin.js');
    const b = builtinTask(w.task);
    if (!b) throw new Error(`unknown built-in task ${w.task}`);
    return { task: pathToFileURL(b.task).href, baseline: pathToFileURL(b.baseline).href, candidate: pathToFileURL(b.candidate).href };
  }
  return { task: pathToFileURL(w.task).href, baseline: pathToFileURL(w.baseline).href, candidate: pathToFileURL(w.candidate).href };
}

/** The limit row: both roles' tight loops, `threads` threads' worth. */
export async function limitRow(w: Workload, threads: number): Promise<{ row: ThroughputRow; runnerRow: ThroughputRow; usPerCase: { baseline: number; candidate: number }; runnerUsPerCase: { baseline: number; candidate: number } }> {
  const urls = await workloadUrls(w);
  const n = Math.min(w.n, 20_000);
  const b = await limitUsPerCase(urls.task, urls.baseline, n, w.seed ?? 1);
  const c = await limitUsPerCase(urls.task, urls.candidate, n, w.seed ?? 1);
  const rate = Math.round((1e6 / ((b.usPerCase + c.usPerCase) / 2)) * threads);
  const runnerRate = Math.round((1e6 / ((b.runnerUsPerCase + c.runnerUsPerCase) / 2)) * threads);
  return {
    row: { path: `limit: the case work in a tight loop (${threads} × 1 thread)`, threads, cases: 2 * n, seconds: 0, cases_per_sec: rate, share_of_limit: 1 },
    runnerRow: { path: `case thread: the chunk runner alone (${threads} × 1 thread)`, threads, cases: 2 * n, seconds: 0, cases_per_sec: runnerRate, share_of_limit: Number((runnerRate / rate).toFixed(3)) },
    usPerCase: { baseline: b.usPerCase, candidate: c.usPerCase },
    runnerUsPerCase: { baseline: b.runnerUsPerCase, candidate: c.runnerUsPerCase },
  };
}

/** CPU time (user + system) of a process and all its threads, ms, from /proc (Linux). */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

/** Runs one evaluation given its option values; its wall time and the CPU time of the process that ran it. */
export type EvaluationRunner = (values: Record<string, unknown>) => Promise<{ seconds: number; cpuMs: number }>;

/** The in-process runner: the evaluation runs in this process (`metaguard bench`, run from the build). */
export const runInProcess: EvaluationRunner = async (values) => {
  const options = resolveEvaluateOptions({ values, env: {} });
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  await runEvaluation(options);
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { seconds, cpuMs: (cpu.user + cpu.system) / 1000 };
};

/**
 * One evaluation of the workload with `values` (evaluate options), timed; CPU of the process that ran
 * it (the coordinator: `run`, in-process by default) and of `daemonPids`.
 */
export async function evaluationRow(path: string, w: Workload, threads: number, values: Record<string, unknown>, limit: number, daemonPids: number[] = [], run: EvaluationRunner = runInProcess): Promise<ThroughputRow> {
  const dir = mkdtempSync(join(tmpdir(), 'mg-bench-'));
  try {
    const files = w.baseline === undefined ? { task: w.task } : { task: w.task, baseline: w.baseline, candidate: w.candidate };
    const daemons0 = daemonPids.map(processCpuMs);
    // Wilson intervals: the statistics are not what this measures (a bootstrap would be).
    const { seconds, cpuMs } = await run({ ...files, n: w.n, seed: w.seed ?? 1, ciMethod: 'wilson', reportDir: dir, ...values });
    const daemonMs = daemonPids.reduce((s, pid, i) => s + processCpuMs(pid) - daemons0[i], 0);
    const cases = 2 * w.n;
    const rate = Math.round(cases / seconds);
    const row: ThroughputRow = { path, threads, cases, seconds: Number(seconds.toFixed(2)), cases_per_sec: rate, share_of_limit: Number((rate / limit).toFixed(3)) };
    if (values.dispatcher === 'queue') {
      row.coordinator_us_per_case = Number(((cpuMs * 1000) / cases).toFixed(1));
      row.coordinator_cpu_ms = cpuMs;
    }
    if (daemonPids.length) {
      row.daemon_us_per_case = Number(((daemonMs * 1000) / cases).toFixed(1));
      row.daemon_cpu_ms = daemonMs;
    }
    return row;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `metaguard bench`'s rows: the limit, local with `threads` threads, the memory queue with `threads`
 * in-process workers, and — given a queue config of another backend (its workers started by the
 * operator) — that backend.
 */
export async function throughputRows(w: Workload, threads: number, queueConfig?: Record<string, unknown>, onRow?: (row: ThroughputRow) => void): Promise<ThroughputRow[]> {
  const rows: ThroughputRow[] = [];
  const add = (r: ThroughputRow) => {
    rows.push(r);
    onRow?.(r);
  };
  const { row: limit } = await limitRow(w, threads);
  add(limit);
  const warm = { ...w, n: Math.min(w.n, 500) };
  await evaluationRow('warm-up', warm, threads, { parallel: threads }, limit.cases_per_sec);
  add(await evaluationRow(`local (${threads} threads)`, w, threads, { parallel: threads }, limit.cases_per_sec));
  add(await evaluationRow(`queue: memory (${threads} in-process workers)`, w, threads, { dispatcher: 'queue', queueConfig: { backend: 'memory', spawn_local_workers: threads } }, limit.cases_per_sec));
  if (queueConfig && queueConfig.backend !== undefined && queueConfig.backend !== 'memory') {
    await evaluationRow('warm-up', warm, threads, { dispatcher: 'queue', queueConfig }, limit.cases_per_sec);
    add(await evaluationRow(`queue: ${String(queueConfig.backend)} (running workers)`, w, threads, { dispatcher: 'queue', queueConfig }, limit.cases_per_sec));
  }
  return rows;
}
