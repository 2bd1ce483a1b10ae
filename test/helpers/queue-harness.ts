/**
 * Shared pieces of the queue end-to-end tests: worker daemons as real child processes (the CLI's
 * `worker` command), coordinator runs through runEvaluation, and a local reference run to compare.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { resolveEvaluateOptions, runEvaluation, type EvaluationHooks } from '../../src/evaluate.ts';
import { QueueDispatcher } from '../../src/dispatch/queue.ts';
import { validateQueueConfig } from '../../src/options/queue.ts';
import type { Backend } from '../../src/queue/types.ts';
import type { Report } from '../../src/reports/types.ts';
import { startRedis, type RedisServer } from './redis-server.ts';

const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const fixture = (p: string) => join(root, 'test', 'fixtures', p);
const cliEntry = join(root, 'src', 'cli', 'run.ts');

export interface WorkerProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => killAllWorkers());

const dispatchers = new Set<QueueDispatcher>();

/**
 * Kills every worker process still running and closes every coordinator still waiting (call from an
 * `after` hook so that a failed test leaks nothing and the file's process can exit).
 */
export function killAllWorkers(): void {
  for (const c of live) c.kill('SIGKILL');
  for (const d of dispatchers) void d.close().catch(() => {});
  dispatchers.clear();
}

/**
 * A redis-server for the enclosing `describe`: started before its tests; after them every worker
 * spawned is killed and the server stopped. `queueConfig(prefix, extra)` names a fresh queue on it.
 */
export function redisSuite(): { readonly port: number; queueConfig(prefix: string, extra?: object): Record<string, unknown> } {
  let server: RedisServer | undefined;
  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    killAllWorkers();
    await server?.stop();
  });
  const suite = {
    get port(): number {
      if (!server) throw new Error('redisSuite: the server starts in before(); read the port inside a test');
      return server.port;
    },
    queueConfig: (prefix: string, extra: object = {}) => ({ backend: 'redis', connection: { host: '127.0.0.1', port: suite.port }, queue: `${prefix}_${randomUUID().slice(0, 8)}`, ...extra }),
  };
  return suite;
}

export function spawnWorker(queueConfig: object, options: { args?: string[]; env?: Record<string, string> } = {}): WorkerProcess {
  const cacheDir = mkdtempSync(join(tmpdir(), 'mg-cache-'));
  const child = spawn(process.execPath, ['--import', 'tsx', cliEntry, 'worker', '--log-json', '--poll-interval', '0.05', '--cache-dir', cacheDir, ...(options.args ?? [])], {
    env: { ...process.env, METAGUARD_QUEUE_CONFIG: JSON.stringify(queueConfig), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.once('exit', (code, signal) => {
      live.delete(child);
      res({ code, signal });
    }),
  );
  return { child, output: () => out, exited };
}

export interface RunOptions {
  task: string;
  baseline: string;
  candidate: string;
  n: number;
  seed?: number;
  timeoutS?: number;
  /** Threads of a local run. @defaultValue 2 */
  parallel?: number;
  /** Where a local run's cases run. @defaultValue 'thread' */
  isolation?: 'thread' | 'process';
  /** Folder of module bundles. @defaultValue the user's cache */
  cacheDir?: string;
}

function evaluateValues(run: RunOptions, dir: string) {
  return {
    task: run.task,
    baseline: run.baseline,
    candidate: run.candidate,
    n: run.n,
    seed: run.seed ?? 7,
    timeoutS: run.timeoutS ?? 10,
    reportDir: dir,
    ...(run.cacheDir ? { cacheDir: run.cacheDir } : {}),
  };
}

export async function localReport(run: RunOptions): Promise<Report> {
  const dir = mkdtempSync(join(tmpdir(), 'mg-local-'));
  const options = resolveEvaluateOptions({ values: { ...evaluateValues(run, dir), dispatcher: 'local', parallel: run.parallel ?? 2, ...(run.isolation ? { isolation: run.isolation } : {}) }, env: {} });
  return (await runEvaluation(options)).report;
}

/** Runs an evaluation through the queue; `wrap` may wrap the coordinator's backend (fault injection). */
export async function queueReport(
  run: RunOptions,
  queueConfig: object,
  hooks: Pick<EvaluationHooks, 'onProgress'> & { wrap?: (b: Backend) => Backend; onDispatcher?: (d: QueueDispatcher) => void } = {},
): Promise<Report> {
  const dir = mkdtempSync(join(tmpdir(), 'mg-queue-'));
  const options = resolveEvaluateOptions({ values: { ...evaluateValues(run, dir), dispatcher: 'queue', queueConfig }, env: {} });
  const config = validateQueueConfig(queueConfig);
  const outcome = await runEvaluation(options, {
    ...(hooks.onProgress ? { onProgress: hooks.onProgress } : {}),
    createDispatcher: async () => {
      let backend: Backend | undefined;
      if (hooks.wrap) {
        const { createBackend } = await import('../../src/queue/index.ts');
        backend = hooks.wrap(await createBackend(config));
      }
      const d = new QueueDispatcher({ config, ...(backend ? { backend } : {}) });
      dispatchers.add(d);
      hooks.onDispatcher?.(d);
      return d;
    },
  });
  return outcome.report;
}

/** The parts of a report that must not depend on how cases were dispatched. */
export function assertSameVerdict(actual: Report, expected: Report): void {
  for (const role of ['baseline', 'candidate'] as const) {
    assert.equal(actual[role].total, expected[role].total, `${role} total`);
    assert.equal(actual[role].passes, expected[role].passes, `${role} passes`);
    assert.equal(actual[role].prop_violations, expected[role].prop_violations, `${role} property violations`);
    assert.equal(actual[role].mr_violations, expected[role].mr_violations, `${role} relation violations`);
    assert.deepEqual(actual[role].errors, expected[role].errors, `${role} errors`);
  }
  assert.deepEqual(actual.statistics.paired, expected.statistics.paired, 'paired table');
  assert.deepEqual(actual.delta_ci, expected.delta_ci, 'delta CI');
  assert.deepEqual(actual.decision, expected.decision, 'decision');
}
