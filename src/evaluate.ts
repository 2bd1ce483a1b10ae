/**
 * One evaluation, start to finish: resolve options, load the task, generate cases, run both
 * implementations through a dispatcher, compute statistics, apply the gate, write the reports.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import { existsSync } from 'node:fs';
import { MetaguardError, invalidOption, toErrorInfo, type ErrorInfo, type MetaguardErrorCode } from './errors.js';
import { evaluateSchema, type EvaluateOptions } from './options/evaluate.js';
import { decide } from './gate/index.js';
import { builtinTask } from './task/builtin.js';
import { moduleUrl } from './task/load.js';
import { bundleModule } from './task/bundle.js';
import { sha256 } from './util/hash.js';
import { defaultCacheDir } from './util/paths.js';
import { CasePool, type CaseRunner } from './execution/pool.js';
import { createRolePools, createRunner } from './execution/pools.js';
import { caseEnvironment } from './execution/env.js';
import { LocalDispatcher } from './dispatch/local.js';
import { abortReason, moduleLoadError, type Dispatcher, type JobSpec } from './dispatch/types.js';
import { collectViolations, countedErrors, summarizeRole, violatingCases } from './reports/build.js';
import { writeJsonReport, writeTextFile } from './reports/write.js';
import { renderHtml } from './reports/html.js';
import { renderJunit } from './reports/junit.js';
import type { Decision, Report } from './reports/types.js';
import { computeInterval, mcnemarTest, pairedPower } from './statistics/index.js';
import { silentLogger, type Logger } from './observe/log.js';
import { Metrics } from './observe/metrics.js';
import { serveMetrics, type MetricsServer } from './observe/server.js';
import { QueueDispatcher } from './dispatch/queue.js';
import { startWorker, type DaemonHandle } from './daemon/daemon.js';
import { resolveQueueConfig } from './options/queue.js';
import { createBackend } from './queue/index.js';
import { version } from './version.js';
import { displayUrl, endpointHash, isEndpointUrl, parseEndpoint, resolveHeaders, DEFAULT_CONCURRENCY, type JobExec, type RoleExec } from './http/endpoint.js';

export type EvaluateInput = Partial<EvaluateOptions> & { task: string };

export { resolveEvaluateOptions } from './options/resolve-evaluate.js';
import { resolveEvaluateOptions } from './options/resolve-evaluate.js';
import { roles, type Role, type CaseList, type CaseResult } from './core/protocol.js';

interface ResolvedModules {
  taskUrl: string;
  implUrls: Record<Role, string>;
}

function resolveModules(options: EvaluateOptions): ResolvedModules {
  const builtin = existsSync(options.task) ? undefined : builtinTask(options.task);
  const taskPath = builtin ? builtin.task : options.task;
  const pick = (role: Role): string => {
    const given = options[role];
    // An endpoint URL is the implementation itself (src/http): there is no module to find.
    if (given !== undefined) return isEndpointUrl(given) ? parseEndpoint({ url: given }, `--${role}`).url : moduleUrl(given, role);
    if (builtin) return moduleUrl(builtin[role], role);
    throw invalidOption(`--${role}`, 'is required when --task is a file (built-in tasks have example implementations)');
  };
  return { taskUrl: moduleUrl(taskPath, 'task'), implUrls: { baseline: pick('baseline'), candidate: pick('candidate') } };
}

/** A module's sha256 (of its bundle); an endpoint URL's hash of its method, URL and header names. */
function implementationHash(url: string, exec?: RoleExec): string {
  return isEndpointUrl(url) && exec?.endpoint ? endpointHash(exec.endpoint) : sha256File(url);
}

export function sha256File(url: string): string {
  return sha256(readFileSync(fileURLToPath(url)));
}

/**
 * Loads a role's implementation (with the task) in a thread of the pool given for it — user code never
 * runs in this thread — and returns what failed (null: it loads, or it is an endpoint URL). A module
 * that does not load is an error (exit 2, `moduleLoadError` naming the role and the file), never a verdict.
 */
function checkImplementation(modules: ResolvedModules, pools: Record<Role, CaseRunner>, role: Role): Promise<ErrorInfo | null> {
  return isEndpointUrl(modules.implUrls[role]) ? Promise.resolve(null) : pools[role].checkModules(modules.taskUrl, modules.implUrls[role]);
}

/**
 * Concurrency and endpoint of each role: a URL is an endpoint; a module exporting `http` describes one
 * (asked in a thread of the role's pool). Undefined when both roles are modules run one case at a time.
 */
async function describeExec(options: EvaluateOptions, modules: ResolvedModules, sources: Record<'task' | Role, string>, pools: Record<Role, CaseRunner>, logger: Logger): Promise<JobExec | undefined> {
  const roleExec = async (role: Role): Promise<RoleExec> => {
    const url = modules.implUrls[role];
    let described: unknown;
    if (isEndpointUrl(url)) described = { url };
    else {
      // Loading was checked just before: a module that still fails here (its thread died, the ask timed
      // out) is run as a plain module, and the failure is said with its code.
      const d = await pools[role].describeImplementation(url).catch((err: unknown) => {
        const e = toErrorInfo(err, 'MG_ERR_MODULE_LOAD');
        logger.warn('unexpected_error', { during: `describe ${role} implementation`, code: e.code, message: e.message });
        return { kind: 'none' as const };
      });
      if (d.kind === 'invalid') throw new MetaguardError('MG_ERR_INVALID_IMPLEMENTATION', `implementation ${sources[role]}: http: ${d.message}`);
      if (d.kind === 'http') described = d.http;
    }
    const endpoint = described === undefined ? undefined : parseEndpoint(described, isEndpointUrl(url) ? `--${role}` : `implementation ${sources[role]}: http`);
    return { concurrency: options.concurrency ?? (endpoint ? DEFAULT_CONCURRENCY.endpoint : DEFAULT_CONCURRENCY.module), ...(endpoint ? { endpoint } : {}) };
  };
  const exec = { baseline: await roleExec('baseline'), candidate: await roleExec('candidate') };
  if (!exec.baseline.endpoint && !exec.candidate.endpoint && exec.baseline.concurrency === 1 && exec.candidate.concurrency === 1) return undefined;
  return { roles: exec, httpRetries: options.httpRetries, ...(options.rateLimit !== undefined ? { rateLimit: options.rateLimit } : {}) };
}

export interface EvaluationHooks {
  logger?: Logger;
  /** Called as cases finish: (done, total) over both roles. */
  onProgress?(done: number, total: number): void;
  /** Called with true while the queue has no live worker (cases wait), false once one is alive. */
  onWaiting?(waiting: boolean): void;
  /** Supplies the queue dispatcher for `--dispatcher queue`. @defaultValue the queue dispatcher of the queue config */
  createDispatcher?(options: EvaluateOptions, extras: { logger: Logger }): Promise<Dispatcher> | Dispatcher;
  env?: NodeJS.ProcessEnv;
  /**
   * Stops the evaluation (SIGINT, SIGTERM): its reason — `{ code, message }`, e.g. a MetaguardError —
   * becomes the rejection, with the cases done and what was withdrawn appended.
   */
  signal?: AbortSignal;
}

export interface EvaluationOutcome {
  report: Report;
  reportPath: string;
  htmlPath?: string;
  junitPath?: string;
}

export async function runEvaluation(options: Readonly<EvaluateOptions>, hooks: EvaluationHooks = {}): Promise<EvaluationOutcome> {
  const logger = hooks.logger ?? silentLogger;
  // The one place a programmatic run falls back to this process's environment; below, it is passed down.
  const env = hooks.env ?? process.env;
  const started = new Date();
  const files = resolveModules(options);
  const sources = { task: describePath(files.taskUrl), baseline: describePath(files.implUrls.baseline), candidate: describePath(files.implUrls.candidate) };
  // One loader: every module becomes a bundle; the pool runs it, the queue ships it, `hashes` name it.
  // An endpoint URL is not a module: it stays as it is.
  const bundled = (url: string, path: string, what: string) => (isEndpointUrl(url) ? Promise.resolve(url) : bundleModule(path, what, options.cacheDir ?? defaultCacheDir(env)).then((b) => b.url));
  const [taskBundle, baselineBundle, candidateBundle] = await Promise.all([
    bundled(files.taskUrl, sources.task, 'task'),
    bundled(files.implUrls.baseline, sources.baseline, 'baseline'),
    bundled(files.implUrls.candidate, sources.candidate, 'candidate'),
  ]);
  const modules: ResolvedModules = { taskUrl: taskBundle, implUrls: { baseline: baselineBundle, candidate: candidateBundle } };
  let done = 0;
  const total = options.n * 2;
  // One signal stops the run, whatever asked: the caller (a signal), or --deadline-s. User code never
  // runs in this thread (the task's gen included), so the signal is always heard.
  const stop = new AbortController();
  const forward = () => {
    const reason = abortReason(hooks.signal!);
    stop.abort(new MetaguardError(reason.code as MetaguardErrorCode, `${reason.message} with ${done} of ${total} cases done`));
  };
  if (hooks.signal?.aborted) forward();
  else hooks.signal?.addEventListener('abort', forward, { once: true });
  const deadline =
    options.deadlineS === undefined
      ? undefined
      : setTimeout(() => stop.abort(new MetaguardError('MG_ERR_DEADLINE', `--deadline-s ${options.deadlineS} passed with ${done} of ${total} cases done`)), options.deadlineS * 1000);
  try {
    return await runCases(options, { ...hooks, env }, logger, started, modules, sources, stop.signal, () => done++);
  } finally {
    clearTimeout(deadline);
    hooks.signal?.removeEventListener('abort', forward);
  }
}

async function runCases(
  options: Readonly<EvaluateOptions>,
  hooks: EvaluationHooks,
  logger: Logger,
  started: Date,
  modules: ResolvedModules,
  sources: Record<'task' | Role, string>,
  signal: AbortSignal,
  countOne: () => number,
): Promise<EvaluationOutcome> {
  const abortError = () => {
    const r = abortReason(signal);
    return new MetaguardError(r.code as MetaguardErrorCode, r.message);
  };
  const timeoutMs = Math.round(options.timeoutS * 1000);
  const env = hooks.env ?? {};
  const isolation = options.isolation ?? 'thread';
  // Each role runs in a pool of its own (a candidate never shares a realm with the baseline), and the
  // local dispatcher runs on the pools that checked the implementations. Through a queue the cases run
  // on the workers, and these pools only check and describe the implementations: with thread
  // isolation, the baseline's check runs in the gen thread once gen has returned (one thread fewer to
  // start: ~100 ms of CPU, spent on the cores gen runs on); the candidate's in a thread of its own, so
  // nothing the task or the baseline left behind (a timer, a changed global) is blamed on it. With
  // --isolation process both are checked in case processes, never in a thread of this process.
  const shareGenThread = options.dispatcher !== 'local' && isolation === 'thread';
  const readPaths = [modules.taskUrl, ...roles.map((r) => modules.implUrls[r])].filter((u) => u.startsWith('file:')).map((u) => dirname(fileURLToPath(u)));
  const limits = { timeoutMs, memMb: options.memMb };
  const own = shareGenThread ? undefined : createRolePools(options.dispatcher === 'local' ? options.parallel : 1, limits, { isolation, readPaths, env: caseEnvironment(env) });
  const candidatePool = own?.candidate ?? createRunner(1, limits, { env: caseEnvironment(env) });
  // The task's gen runs in a thread of its own, never in this one (a hung gen cannot defeat a deadline
  // or a signal) and never in a realm where an implementation was loaded.
  const genPool = new CasePool({ threads: 1, ...limits, env: caseEnvironment(env) });
  const pools: Record<Role, CaseRunner> = own ?? { baseline: genPool, candidate: candidatePool };
  const threadsOf: [string, CaseRunner][] = own ? roles.map((role) => [`a ${role} case thread`, own[role]]) : [['the gen thread', genPool], ['the candidate\'s check thread', candidatePool]];
  for (const [what, pool] of threadsOf) {
    pool.on('idleExit', (err: unknown) => {
      const e = toErrorInfo(err, 'E_CRASH');
      logger.warn('unexpected_error', { during: `${what} exited while idle (it is replaced)`, code: e.code, message: e.message });
    });
  }
  /** The gen thread stopping: it is not waited for before the run starts (a thread takes ~30 ms to terminate), only before this returns. */
  let genStopped: Promise<void> | undefined;
  const stopGen = () =>
    (genStopped ??= genPool.destroy().catch((err: unknown) => {
      const e = toErrorInfo(err, 'E_CRASH');
      logger.warn('unexpected_error', { during: 'stopping the gen thread', code: e.code, message: e.message });
    }));
  const destroyPools = () => Promise.all([stopGen(), candidatePool.destroy(), ...(own ? [own.baseline.destroy()] : [])]);
  let job: JobSpec;
  let taskName: string;
  logger.log('debug', 'evaluation_preparing', { task: sources.task, baseline: sources.baseline, candidate: sources.candidate });
  try {
    // The implementations load in their pools while gen runs (the baseline after it, when it shares the
    // gen thread); a gen failure is still the one reported first, then the baseline's, then the
    // candidate's (the checks' outcomes are held, never left to reject unhandled).
    const held = <T>(p: Promise<T>) =>
      p.then(
        (value) => ({ value }),
        (err: unknown) => ({ err }),
      );
    const early: Role[] = own ? [...roles] : ['candidate'];
    const checked = held(Promise.all(early.map((role) => checkImplementation(modules, pools, role))));
    let generated: Awaited<ReturnType<CasePool['generate']>>;
    try {
      generated = await raceAbort(genPool.generate(modules.taskUrl, sources.task, options.n, options.seed, signal), signal, abortError);
    } finally {
      if (own) stopGen();
    }
    if (!generated.ok) throw new MetaguardError(generated.code as MetaguardErrorCode, generated.message);
    taskName = generated.name;
    job = { ...modules, taskName, seed: options.seed, timeoutMs, memMb: options.memMb, cases: generated.cases, payloads: generated.cases.payloads, sources };
    if (!own) {
      const info = await raceAbort(checkImplementation(modules, pools, 'baseline'), signal, abortError);
      if (info) throw moduleLoadError('baseline', sources, info);
    }
    const outcome = await raceAbort(checked, signal, abortError);
    if ('err' in outcome) throw outcome.err;
    early.forEach((role, i) => {
      const info = outcome.value[i];
      if (info) throw moduleLoadError(role, sources, info);
    });
    const exec = await raceAbort(describeExec(options, modules, sources, pools, logger), signal, abortError);
    if (exec) job.exec = exec;
    // Run here, header variables must be set now (exit 2 naming the header); through a queue each
    // worker fills them in from its own environment.
    if (options.dispatcher === 'local') for (const role of roles) if (exec?.roles[role].endpoint) resolveHeaders(exec.roles[role].endpoint!, env);
  } catch (err) {
    await destroyPools();
    throw err;
  }
  if (options.dispatcher !== 'local') await destroyPools();
  const metrics = options.metrics ? new Metrics({ defaultMetrics: true }) : undefined;
  let dispatcher: Dispatcher;
  if (options.dispatcher === 'local') dispatcher = new LocalDispatcher({ threads: options.parallel, pools, env });
  else if (hooks.createDispatcher) dispatcher = await hooks.createDispatcher(options, { logger });
  else dispatcher = await createQueueDispatcher(options, { logger, env });
  // The dispatcher and its case pools publish what they observe; the metrics take this dispatcher's.
  metrics?.attachCoordinator(dispatcher);
  let server: MetricsServer | undefined;
  if (metrics) {
    server = await serveMetrics({
      metrics,
      host: options.metricsHost,
      port: options.metricsPort,
      beforeScrape: async () => {
        const backend = dispatcher instanceof QueueDispatcher ? dispatcher.backend : undefined;
        if (backend) await metrics.refreshQueue(backend);
      },
      onScrapeError: (err) => logger.warn('backend_error', { during: 'metrics scrape', code: (err as { code?: string }).code, message: (err as Error).message }),
    }).catch(async (err: unknown) => {
      // The dispatcher may already hold threads or in-process workers: stop them, or the process stays up.
      await Promise.all([dispatcher.close(), stopGen()]);
      throw err;
    });
  }

  logger.info('evaluation_started', { task: taskName, n: options.n, seed: options.seed, dispatcher: options.dispatcher });
  const cases = job.cases;
  const total = cases.length * 2;
  // Case faults are logged as they happen, the first few of each kind per role; the report has every count.
  const logged = new Map<string, number>();
  const caseEvents = { E_TIMEOUT: 'case_timeout', E_OOM: 'case_oom', E_CRASH: 'case_crash' } as const;
  let results: Record<Role, CaseResult[]>;
  hooks.onProgress?.(0, total);
  try {
    results = await dispatcher.run(job, {
      signal,
      ...(hooks.onWaiting ? { onWaiting: hooks.onWaiting } : {}),
      onResult: (role, r) => {
        const done = countOne() + 1;
        const event = r.error && caseEvents[r.error.code as keyof typeof caseEvents];
        if (event) {
          const key = `${role}:${event}`;
          const count = (logged.get(key) ?? 0) + 1;
          logged.set(key, count);
          if (count <= 3) logger.warn(event, { role, case_index: r.index, message: r.error!.message, ...(count === 3 ? { note: 'further ones are counted in the report' } : {}) });
        }
        hooks.onProgress?.(done, total);
      },
    });
  } finally {
    await Promise.all([dispatcher.close(), stopGen()]);
    metrics?.detach();
    await server?.close();
  }

  const report = buildReport(options, taskName, modules, cases, results, started, job.exec);
  logger.info('evaluation_finished', { task: taskName, adopt: report.decision.adopt, reason: report.decision.reason, delta_pass_rate: report.delta_pass_rate });
  const outcome: EvaluationOutcome = { report, reportPath: writeJsonReport(report, options.reportDir) };
  if (options.htmlReport) outcome.htmlPath = writeTextFile(options.htmlReport, renderHtml(report));
  if (options.junitReport) outcome.junitPath = writeTextFile(options.junitReport, renderJunit(report));
  return outcome;
}

/** Settles with `work`, or rejects with the abort's error as soon as `signal` aborts. */
async function raceAbort<T>(work: Promise<T>, signal: AbortSignal, error: () => Error): Promise<T> {
  if (signal.aborted) throw error();
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(error());
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

const describePath = (url: string) => (url.startsWith('file:') ? fileURLToPath(url) : isEndpointUrl(url) ? displayUrl(url) : url);

/** Case results without the indices where either role's case was not delivered (E_DELIVERY). */
function delivered(results: Record<Role, CaseResult[]>): { results: Record<Role, CaseResult[]>; undelivered: number; reason: string } {
  const n = results.baseline.length;
  // Every case delivered, each result at its index (the common case): the results as they are.
  let whole = results.candidate.length === n;
  for (let i = 0; i < n && whole; i++) {
    const b = results.baseline[i];
    const c = results.candidate[i];
    whole = b?.index === i && c?.index === i && b.error?.code !== 'E_DELIVERY' && c.error?.code !== 'E_DELIVERY';
  }
  if (whole) return { results, undelivered: 0, reason: '' };
  const keep: Record<Role, CaseResult[]> = { baseline: [], candidate: [] };
  let undelivered = 0;
  const reasons = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const b = results.baseline[i];
    const c = results.candidate[i];
    const lost = [b, c].filter((r) => r?.error?.code === 'E_DELIVERY');
    if (lost.length) {
      undelivered++;
      for (const r of lost) reasons.set(r.error!.message, (reasons.get(r.error!.message) ?? 0) + 1);
      continue;
    }
    // Re-indexed, so countedErrors pairs the same case of both roles.
    keep.baseline.push({ ...b, index: keep.baseline.length });
    keep.candidate.push({ ...c, index: keep.candidate.length });
  }
  const top = [...reasons.entries()].sort((a, b) => b[1] - a[1])[0];
  return { results: keep, undelivered, reason: top ? top[0] : '' };
}

function buildReport(
  options: EvaluateOptions,
  taskName: string,
  modules: ResolvedModules,
  cases: CaseList,
  results: Record<Role, CaseResult[]>,
  started: Date,
  exec?: JobExec,
): Report {
  const n = cases.length;
  // The statistics and the gate see only cases delivered for both roles; the role summaries see all.
  const kept = delivered(results);
  // A loop, not Uint8Array.from(rs, fn): that one costs ~40-80 ms per 200,000 results, this ~1-5.
  const pass = (rs: CaseResult[]) => {
    const out = new Uint8Array(rs.length);
    for (let i = 0; i < rs.length; i++) out[i] = rs[i].passed ? 1 : 0;
    return out;
  };
  const b = pass(kept.results.baseline);
  const c = pass(kept.results.candidate);
  const m = b.length;
  let both = 0, candOnly = 0, baseOnly = 0, neither = 0;
  for (let i = 0; i < m; i++) {
    if (b[i] && c[i]) both++;
    else if (c[i]) candOnly++;
    else if (b[i]) baseOnly++;
    else neither++;
  }
  const baseline = summarizeRole(results.baseline);
  const candidate = summarizeRole(results.candidate);
  const deltaCi: [number, number] = m > 0 ? computeInterval(options.ciMethod, b, c, { alpha: options.alpha, samples: options.bootstrapSamples, seed: options.seed }) : [0, 0];
  const counted = { counted_violations: violatingCases(kept.results.candidate), counted_errors: countedErrors(kept.results.candidate, kept.results.baseline) };
  const gated = decide(
    { candidateViolations: counted.counted_violations + counted.counted_errors, candidatePassRate: m ? (kept.results === results ? candidate : summarizeRole(kept.results.candidate)).pass_rate : 0, deltaCi },
    { violationCap: options.violationCap, minPassRate: options.minPassRate, minDelta: options.minDelta },
  );
  const withheld = kept.undelivered > 0 && !options.allowIncomplete;
  const decision: Decision = withheld ? { adopt: false, reason: 'incomplete', ...counted } : { ...gated, ...counted };
  const violations = collectViolations(results, cases);
  const finished = new Date();
  return {
    task: taskName,
    n,
    seed: options.seed,
    config: {
      timeout_s: options.timeoutS,
      mem_mb: options.memMb,
      alpha: options.alpha,
      min_delta: options.minDelta,
      min_pass_rate: options.minPassRate,
      violation_cap: options.violationCap,
      ci_method: options.ciMethod,
      bootstrap_samples: options.bootstrapSamples,
      dispatcher: options.dispatcher,
      ...(options.dispatcher === 'local' ? { parallel: options.parallel } : {}),
      ...(options.policy ? { policy: options.policy } : {}),
      ...(options.allowIncomplete ? { allow_incomplete: true } : {}),
      ...(exec
        ? {
            concurrency: { baseline: exec.roles.baseline.concurrency, candidate: exec.roles.candidate.concurrency },
            http_retries: exec.httpRetries,
            ...(exec.rateLimit !== undefined ? { rate_limit: exec.rateLimit } : {}),
            // Where each endpoint is, without query string or credentials (either may hold a secret).
            endpoints: Object.fromEntries(roles.flatMap((r) => (exec.roles[r].endpoint ? [[r, displayUrl(exec.roles[r].endpoint!.url)]] : []))),
          }
        : {}),
    },
    hashes: {
      task: sha256File(modules.taskUrl),
      baseline: implementationHash(modules.implUrls.baseline, exec?.roles.baseline),
      candidate: implementationHash(modules.implUrls.candidate, exec?.roles.candidate),
    },
    baseline,
    candidate,
    delta_pass_rate: candidate.pass_rate - baseline.pass_rate,
    delta_ci: deltaCi,
    ci_method: options.ciMethod,
    decision,
    ...(kept.undelivered > 0 ? { incomplete: { undelivered_cases: kept.undelivered, reason: kept.reason, decided_on_delivered: !withheld } } : {}),
    statistics: {
      paired: { both_pass: both, candidate_only: candOnly, baseline_only: baseOnly, neither },
      mcnemar: mcnemarTest(candOnly, baseOnly),
      power: pairedPower({ n: m, b: candOnly, c: baseOnly, minDelta: options.minDelta, alpha: options.alpha }),
      alpha: options.alpha,
      ...(options.ciMethod.startsWith('bootstrap') ? { bootstrap_samples: options.bootstrapSamples } : {}),
    },
    violations: violations.list,
    violations_total: violations.total,
    started_at: started.toISOString(),
    finished_at: finished.toISOString(),
    duration_seconds: (finished.getTime() - started.getTime()) / 1000,
    dispatcher: options.dispatcher,
    metaguard_version: version,
  };
}

/**
 * `--dispatcher queue`: a coordinator on the configured queue. An in-process (memory) queue has no
 * daemon that could reach it, so its `spawn_local_workers` workers are started here, on the backend
 * the coordinator uses, and stopped when the dispatcher closes; the coordinator knows no backend.
 */
export async function createQueueDispatcher(
  options: Pick<EvaluateOptions, 'queueConfig'> & Partial<Pick<EvaluateOptions, 'noWorkerTimeoutS'>>,
  extras: { logger?: Logger; env: NodeJS.ProcessEnv },
): Promise<QueueDispatcher> {
  const config = resolveQueueConfig(options.queueConfig ?? {}, extras.env);
  const logger = extras.logger ? { logger: extras.logger } : {};
  const common = { config, ...logger, ...(options.noWorkerTimeoutS !== undefined ? { noWorkerTimeoutS: options.noWorkerTimeoutS } : {}) };
  if (config.spawn_local_workers === 0) return new QueueDispatcher(common);
  const backend = await createBackend(config, logger);
  const workers: DaemonHandle[] = [];
  try {
    const tag = randomBytes(4).toString('hex');
    for (let i = 0; i < config.spawn_local_workers; i++) {
      workers.push(await startWorker({ backend, config, threads: 1, pollIntervalS: 0.02, env: extras.env, workerId: `local-${i}-${tag}`, ...logger }));
    }
  } catch (err) {
    await Promise.all(workers.map((w) => w.close()));
    await backend.close();
    throw err;
  }
  return new QueueDispatcher({ ...common, backend, localWorkers: workers });
}

/** Programmatic API: runs an evaluation and returns its report. */
export async function evaluate(input: EvaluateInput, hooks: EvaluationHooks = {}): Promise<Report> {
  const options = resolveEvaluateOptions({ values: input as Record<string, unknown>, env: hooks.env ?? {} });
  return (await runEvaluation(options, hooks)).report;
}
