/**
 * One evaluation, start to finish: resolve options, load the task, generate cases, run both
 * implementations through a dispatcher, compute statistics, apply the gate, write the reports.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import { existsSync } from 'node:fs';
import { MetaguardError, invalidOption } from './errors.js';
import { resolveOptions, type Sources } from './options/schema.js';
import { evaluateSchema, type EvaluateOptions } from './options/evaluate.js';
import { loadPolicy } from './gate/policy.js';
import { decide } from './gate/index.js';
import { builtinTask } from './spec/builtin.js';
import { loadTask, moduleUrl } from './spec/load.js';
import type { CaseRunner } from './execution/pool.js';
import { createRolePools } from './execution/pools.js';
import type { CaseResult } from './execution/protocol.js';
import { LocalDispatcher } from './dispatch/local.js';
import { roles, type Dispatcher, type JobSpec, type Role } from './dispatch/types.js';
import { collectViolations, summarizeRole, violatingCases } from './reports/build.js';
import { writeJsonReport, writeTextFile } from './reports/write.js';
import { renderHtml } from './reports/html.js';
import { renderJunit } from './reports/junit.js';
import type { Report } from './reports/types.js';
import { computeInterval, mcnemarTest, pairedPower } from './statistics/index.js';
import { silentLogger, type Logger } from './observe/log.js';
import { Metrics } from './observe/metrics.js';
import { serveMetrics, type MetricsServer } from './observe/server.js';
import { QueueDispatcher, createQueueDispatcher } from './dispatch/queue.js';
import { version } from './version.js';
import { displayUrl, endpointHash, isEndpointUrl, parseEndpoint, resolveHeaders, DEFAULT_CONCURRENCY, type JobExec, type RoleExec } from './http/endpoint.js';

export type EvaluateInput = Partial<EvaluateOptions> & { task: string };

export { resolveEvaluateOptions } from './options/resolve-evaluate.js';
import { resolveEvaluateOptions } from './options/resolve-evaluate.js';

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

/** A module's sha256; an endpoint URL's hash of its method, URL and header names. */
function implementationHash(url: string, exec?: RoleExec): string {
  return isEndpointUrl(url) && exec?.endpoint ? endpointHash(exec.endpoint) : sha256File(url);
}

export function sha256File(url: string): string {
  return createHash('sha256').update(readFileSync(fileURLToPath(url))).digest('hex');
}

function generateCases(gen: (n: number, seed: number) => unknown[][], n: number, seed: number, task: string): unknown[][] {
  let cases: unknown;
  try {
    cases = gen(n, seed);
  } catch (err) {
    throw new MetaguardError('MG_ERR_TASK_GEN', `task ${task}: gen(${n}, ${seed}) threw: ${(err as Error).message ?? err}`, { cause: err });
  }
  if (!Array.isArray(cases) || cases.length !== n) {
    throw new MetaguardError('MG_ERR_TASK_GEN', `task ${task}: gen(${n}, ${seed}) must return an array of ${n} argument lists, got ${Array.isArray(cases) ? `${cases.length} items` : typeof cases}`);
  }
  cases.forEach((c, i) => {
    if (!Array.isArray(c)) throw new MetaguardError('MG_ERR_TASK_GEN', `task ${task}: case ${i} is not an argument list (an array)`);
  });
  return cases as unknown[][];
}

/**
 * Fails with exit-2 errors for implementations that load but are unusable; load-time crashes are case
 * results. Each role is checked in a thread of its own pool, never in this one.
 */
async function checkImplementations(modules: ResolvedModules, pools: Record<Role, CaseRunner>): Promise<void> {
  const checks = await Promise.all(roles.map((role) => pools[role].checkModules(modules.taskUrl, modules.implUrls[role])));
  for (const info of checks) {
    if (info && info.code.startsWith('MG_ERR_')) throw new MetaguardError(info.code as 'MG_ERR_INVALID_IMPLEMENTATION', info.message);
  }
}

/**
 * Concurrency and endpoint of each role: a URL is an endpoint; a module exporting `http` describes one
 * (asked in a thread of the role's pool). Undefined when both roles are modules run one case at a time.
 */
async function describeExec(options: EvaluateOptions, modules: ResolvedModules, pools: Record<Role, CaseRunner>): Promise<JobExec | undefined> {
  const roleExec = async (role: Role): Promise<RoleExec> => {
    const url = modules.implUrls[role];
    let described: unknown;
    if (isEndpointUrl(url)) described = { url };
    else {
      // A module that fails to load has no endpoint: its cases report the failure (E_CRASH).
      const d = await pools[role].describeImplementation(url).catch(() => ({ kind: 'none' as const }));
      if (d.kind === 'invalid') throw new MetaguardError('MG_ERR_INVALID_IMPLEMENTATION', `implementation ${fileURLToPath(url)}: http: ${d.message}`);
      if (d.kind === 'http') described = d.http;
    }
    const endpoint = described === undefined ? undefined : parseEndpoint(described, isEndpointUrl(url) ? `--${role}` : `implementation ${fileURLToPath(url)}: http`);
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
  /** Supplies the queue dispatcher for `--dispatcher queue`. @defaultValue the queue dispatcher of the queue config */
  createDispatcher?(options: EvaluateOptions, extras: { logger: Logger; metrics?: Metrics }): Promise<Dispatcher> | Dispatcher;
  env?: NodeJS.ProcessEnv;
}

export interface EvaluationOutcome {
  report: Report;
  reportPath: string;
  htmlPath?: string;
  junitPath?: string;
}

export async function runEvaluation(options: Readonly<EvaluateOptions>, hooks: EvaluationHooks = {}): Promise<EvaluationOutcome> {
  const logger = hooks.logger ?? silentLogger;
  const started = new Date();
  const modules = resolveModules(options);
  const task = await loadTask(modules.taskUrl);
  const cases = generateCases(task.gen.bind(task), options.n, options.seed, task.name);
  const job: JobSpec = { ...modules, taskName: task.name, seed: options.seed, timeoutMs: Math.round(options.timeoutS * 1000), memMb: options.memMb, cases };
  const env = hooks.env ?? process.env;
  // The local dispatcher runs on the pools that checked the implementations (one per role); a queue
  // needs one thread per role for the check.
  const readPaths = [modules.taskUrl, ...roles.map((r) => modules.implUrls[r])].filter((u) => u.startsWith('file:')).map((u) => dirname(fileURLToPath(u)));
  const pools = createRolePools(options.dispatcher === 'local' ? options.parallel : 1, { timeoutMs: job.timeoutMs, memMb: job.memMb }, { isolation: options.isolation ?? 'thread', readPaths });
  const destroyPools = () => Promise.all(roles.map((role) => pools[role].destroy()));
  try {
    await checkImplementations(modules, pools);
    const exec = await describeExec(options, modules, pools);
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
  if (options.dispatcher === 'local') dispatcher = new LocalDispatcher({ threads: options.parallel, pools, env, ...(metrics ? { metrics } : {}) });
  else if (hooks.createDispatcher) dispatcher = await hooks.createDispatcher(options, { logger, ...(metrics ? { metrics } : {}) });
  else dispatcher = createQueueDispatcher(options, logger, metrics);
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
    });
  }

  logger.info('evaluation_started', { task: task.name, n: options.n, seed: options.seed, dispatcher: options.dispatcher });
  let done = 0;
  const total = cases.length * 2;
  // Case faults are logged as they happen, the first few of each kind per role; the report has every count.
  const logged = new Map<string, number>();
  const caseEvents = { E_TIMEOUT: 'case_timeout', E_OOM: 'case_oom', E_CRASH: 'case_crash' } as const;
  let results: Record<Role, CaseResult[]>;
  try {
    results = await dispatcher.run(job, {
      onResult: (role, r) => {
        done++;
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
    await dispatcher.close();
    await server?.close();
  }

  const report = buildReport(options, task.name, modules, cases, results, started, job.exec);
  logger.info('evaluation_finished', { task: task.name, adopt: report.decision.adopt, reason: report.decision.reason, delta_pass_rate: report.delta_pass_rate });
  const outcome: EvaluationOutcome = { report, reportPath: writeJsonReport(report, options.reportDir) };
  if (options.htmlReport) outcome.htmlPath = writeTextFile(options.htmlReport, renderHtml(report));
  if (options.junitReport) outcome.junitPath = writeTextFile(options.junitReport, renderJunit(report));
  return outcome;
}

function buildReport(
  options: EvaluateOptions,
  taskName: string,
  modules: ResolvedModules,
  cases: unknown[][],
  results: Record<Role, CaseResult[]>,
  started: Date,
  exec?: JobExec,
): Report {
  const n = cases.length;
  const pass = (rs: CaseResult[]) => Uint8Array.from(rs, (r) => (r.passed ? 1 : 0));
  const b = pass(results.baseline);
  const c = pass(results.candidate);
  let both = 0, candOnly = 0, baseOnly = 0, neither = 0;
  for (let i = 0; i < n; i++) {
    if (b[i] && c[i]) both++;
    else if (c[i]) candOnly++;
    else if (b[i]) baseOnly++;
    else neither++;
  }
  const baseline = summarizeRole(results.baseline);
  const candidate = summarizeRole(results.candidate);
  const deltaCi = computeInterval(options.ciMethod, b, c, { alpha: options.alpha, samples: options.bootstrapSamples, seed: options.seed });
  const decision = decide(
    { candidateViolations: violatingCases(results.candidate), candidatePassRate: candidate.pass_rate, deltaCi },
    { violationCap: options.violationCap, minPassRate: options.minPassRate, minDelta: options.minDelta },
  );
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
    statistics: {
      paired: { both_pass: both, candidate_only: candOnly, baseline_only: baseOnly, neither },
      mcnemar: mcnemarTest(candOnly, baseOnly),
      power: pairedPower({ n, b: candOnly, c: baseOnly, minDelta: options.minDelta, alpha: options.alpha }),
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

/** Programmatic API: runs an evaluation and returns its report. */
export async function evaluate(input: EvaluateInput, hooks: EvaluationHooks = {}): Promise<Report> {
  const options = resolveEvaluateOptions({ values: input as Record<string, unknown>, env: hooks.env ?? {} });
  return (await runEvaluation(options, hooks)).report;
}
