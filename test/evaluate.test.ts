/**
 * End-to-end evaluations through the programmatic API (src/evaluate.ts) on the built-in tasks: the
 * verdicts, the report's shape, strict JSON, hashes, collision-free file names, determinism,
 * every CI method, the violation list, and the HTML / JUnit side reports.
 *
 * Run: node --import tsx --test test/evaluate.test.ts
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, mock } from 'node:test';
import { fileURLToPath } from 'node:url';

import { evaluate, resolveEvaluateOptions, runEvaluation } from '../src/evaluate.js';
import type { Report } from '../src/reports/types.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'mg-eval-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

let dirCounter = 0;
const freshDir = (label: string) => join(tmp, `${label}-${++dirCounter}`);

const N = 200;
const PARALLEL = 2;
const REPORT_NAME = /^report_top_k_\d{8}T\d{6}Z_[0-9a-f]{8}\.json$/;

/** Runs one evaluation into its own report dir and returns the report, the written file and its text. */
async function run(task: string, extra: Record<string, unknown> = {}): Promise<{ report: Report; file: string; text: string; dir: string }> {
  const dir = freshDir(task);
  const report = await evaluate({ task, n: N, parallel: PARALLEL, reportDir: dir, ...extra });
  const files = readdirSync(dir);
  assert.equal(files.length, 1, `one report per evaluation, got ${files.join(', ')}`);
  const file = join(dir, files[0]);
  return { report, file, text: readFileSync(file, 'utf8'), dir };
}

/** top_k's generated cases (seed 42), from its task module. */
const topKTask = (await import(join(root, 'examples', 'top_k', 'task.mjs'))) as { default: { gen(n: number, seed: number): unknown[][] } };
const topKCases = () => topKTask.default.gen(N, 42);

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** Every key of a report, recursively, except the error-code keys of `errors` (E_TIMEOUT, …). */
function allKeys(value: unknown, path = '', out: string[] = []): string[] {
  if (Array.isArray(value)) value.forEach((v, i) => allKeys(v, `${path}[${i}]`, out));
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (!path.endsWith('errors')) out.push(`${path}.${k}`);
      allKeys(v, path ? `${path}.${k}` : k, out);
    }
  }
  return out;
}

function assertRoleSummary(s: Report['baseline'], n: number, label: string): void {
  for (const key of ['passes', 'total', 'pass_rate', 'prop_violations', 'mr_violations', 'errors']) assert.ok(key in s, `${label}.${key} missing`);
  assert.equal(s.total, n, `${label}.total`);
  assert.ok(Number.isInteger(s.passes) && s.passes >= 0 && s.passes <= n, `${label}.passes`);
  assert.equal(s.pass_rate, s.passes / n, `${label}.pass_rate`);
  assert.equal(typeof s.errors, 'object');
  for (const [code, count] of Object.entries(s.errors)) {
    assert.match(code, /^E_[A-Z]+$/);
    assert.ok(Number.isInteger(count) && (count as number) > 0);
  }
}

describe('evaluate() on the built-in tasks', () => {
  let topK: Awaited<ReturnType<typeof run>>;
  let median: Awaited<ReturnType<typeof run>>;

  it('top_k: the candidate is adopted (meets_gate)', async () => {
    topK = await run('top_k');
    const r = topK.report;
    assert.deepEqual(r.decision, { adopt: true, reason: 'meets_gate', counted_violations: 0, counted_errors: 0 });
    assert.equal(r.task, 'top_k');
    assert.equal(r.n, N);
    assert.equal(r.seed, 42);
    assert.equal(r.candidate.passes, N, 'the top_k candidate is correct on every case');
    assert.ok(r.baseline.passes < N, 'the top_k baseline fails when k exceeds the array length');
    assert.equal(r.candidate.prop_violations + r.candidate.mr_violations, 0);
    assert.ok(r.delta_ci[0] >= 0.02, `lower bound ${r.delta_ci[0]} clears min_delta`);
  });

  it('median: the candidate is rejected', async () => {
    median = await run('median');
    const r = median.report;
    assert.equal(r.decision.adopt, false);
    assert.equal(r.decision.reason, 'violations', 'the candidate violates equals_reference (gate: violation cap 0)');
    assert.equal(r.baseline.passes, N, 'the median baseline is correct');
    assert.ok(r.candidate.passes < N);
    assert.ok(r.delta_pass_rate < 0);
    assert.ok(r.delta_ci[1] < 0, 'the candidate is significantly worse');
  });

  it('the report has every documented key', () => {
    for (const { report: r } of [topK, median]) {
      for (const key of ['task', 'n', 'seed', 'config', 'hashes', 'baseline', 'candidate', 'delta_pass_rate', 'delta_ci', 'ci_method', 'decision', 'statistics', 'violations']) {
        assert.ok(key in r, `report.${key} missing`);
      }
      assert.deepEqual(Object.keys(r.hashes).sort(), ['baseline', 'candidate', 'task']);
      assertRoleSummary(r.baseline, N, 'baseline');
      assertRoleSummary(r.candidate, N, 'candidate');
      assert.equal(r.delta_pass_rate, r.candidate.pass_rate - r.baseline.pass_rate);
      assert.ok(Array.isArray(r.delta_ci) && r.delta_ci.length === 2);
      assert.ok(r.delta_ci[0] <= r.delta_ci[1]);
      assert.equal(r.ci_method, 'bootstrap');
      assert.equal(typeof r.decision.adopt, 'boolean');
      assert.equal(typeof r.decision.reason, 'string');
      assert.equal(typeof r.statistics, 'object');
      assert.ok(Array.isArray(r.violations));
      assert.equal(r.config.min_delta, 0.02);
      assert.equal(r.config.ci_method, 'bootstrap');
      // The paired table adds up and matches the summaries.
      const p = r.statistics.paired;
      assert.equal(p.both_pass + p.candidate_only + p.baseline_only + p.neither, N);
      assert.equal(p.both_pass + p.candidate_only, r.candidate.passes);
      assert.equal(p.both_pass + p.baseline_only, r.baseline.passes);
    }
  });

  it('every key is snake_case', () => {
    for (const { report } of [topK, median]) {
      const bad = allKeys(report).filter((k) => !/^[a-z][a-z0-9_]*$/.test(k.slice(k.lastIndexOf('.') + 1)));
      assert.deepEqual(bad, []);
    }
  });

  it('the written file is strictly valid JSON equal to the returned report, without NaN or Infinity', () => {
    for (const { report, text } of [topK, median]) {
      assert.doesNotMatch(text, /\bNaN\b|Infinity/);
      const parsed = JSON.parse(text) as Report;
      assert.deepEqual(parsed, JSON.parse(JSON.stringify(report)));
      // Nothing was turned into null by JSON.stringify: every numeric field of the report is a finite number.
      const numbers: number[] = [];
      JSON.parse(text, (_k, v) => (typeof v === 'number' && numbers.push(v), v));
      assert.ok(numbers.every(Number.isFinite));
      assert.equal(typeof parsed.delta_ci[0], 'number');
      assert.equal(typeof parsed.delta_ci[1], 'number');
      assert.equal(typeof parsed.delta_pass_rate, 'number');
    }
  });

  it('hashes are the sha256 hex of the bundles run (and shipped) for the task and implementation files', async () => {
    const { bundleModule } = await import('../src/task/bundle.ts');
    const { defaultCacheDir } = await import('../src/util/paths.ts');
    const expect = async (task: string, ext: string) => ({
      task: (await bundleModule(join(root, 'examples', task, `task.${ext}`), 'task', defaultCacheDir(process.env))).sha256,
      baseline: (await bundleModule(join(root, 'examples', task, `baseline.${ext}`), 'baseline', defaultCacheDir(process.env))).sha256,
      candidate: (await bundleModule(join(root, 'examples', task, `candidate.${ext}`), 'candidate', defaultCacheDir(process.env))).sha256,
    });
    assert.deepEqual(topK.report.hashes, await expect('top_k', 'mjs'));
    assert.deepEqual(median.report.hashes, await expect('median', 'ts'));
    for (const h of Object.values(topK.report.hashes)) {
      assert.match(h, /^[0-9a-f]{64}$/);
      assert.equal(sha256(join(defaultCacheDir(process.env), 'bundles', `${h}.mjs`)), h, 'the hash is of the bundle file the pool ran');
    }
  });

  it('report file names are report_<task>_<UTC stamp>_<8 hex>.json', () => {
    assert.match(join(topK.file).split('/').pop()!, REPORT_NAME);
    assert.match(median.file.split('/').pop()!, /^report_median_\d{8}T\d{6}Z_[0-9a-f]{8}\.json$/);
  });

  it('violations: capped list entries with case_index, kind, name and input', () => {
    const { report: r } = topK;
    const cases = topKCases();
    assert.ok(r.violations.length > 0, 'the top_k baseline has violations');
    assert.ok(r.violations.length <= r.violations_total);
    for (const v of r.violations) {
      assert.ok(Number.isInteger(v.case_index) && v.case_index >= 0 && v.case_index < N, `case_index ${v.case_index}`);
      assert.ok(['property', 'relation', 'error'].includes(v.kind), v.kind);
      assert.equal(typeof v.name, 'string');
      assert.ok(v.name.length > 0);
      assert.equal(typeof v.input, 'string');
      // top_k's candidate is correct: every violation is the baseline's, on a case with k > len.
      assert.equal(v.role, 'baseline');
      if (!v.input.endsWith('...')) {
        const [xs, k] = JSON.parse(v.input) as [number[], number];
        assert.deepEqual([xs, k], cases[v.case_index], `input of case ${v.case_index} is the generated case`);
        assert.ok(k > xs.length, `case ${v.case_index}: the baseline only fails for k > len`);
      }
    }
    // The summary counts and the list agree (the list is far from its cap here).
    const propCases = new Set(r.violations.filter((v) => v.kind === 'property').map((v) => v.case_index));
    assert.equal(propCases.size, r.baseline.prop_violations);
  });

  it('violations of median name the failing property on even-length inputs', () => {
    const { report: r } = median;
    const candidate = r.violations.filter((v) => v.role === 'candidate');
    assert.ok(candidate.length > 0);
    for (const v of candidate) {
      assert.equal(v.kind, 'property');
      assert.equal(v.name, 'equals_reference');
      const [xs] = JSON.parse(v.input) as [number[]];
      assert.equal(xs.length % 2, 0, `the median candidate is only wrong on even lengths, case ${v.case_index}`);
    }
    assert.equal(new Set(candidate.map((v) => v.case_index)).size, r.candidate.prop_violations);
  });
});


describe('report files and determinism', () => {
  it('two evaluations in the same second write two different files', async () => {
    const dir = freshDir('same-second');
    // Freeze the clock so both reports get the same UTC stamp: only the short id can tell them apart.
    mock.timers.enable({ apis: ['Date'], now: Date.UTC(2030, 0, 2, 3, 4, 5) });
    let reports: Report[];
    try {
      reports = await Promise.all([1, 2].map(() => evaluate({ task: 'top_k', n: 50, parallel: 1, reportDir: dir })));
    } finally {
      mock.timers.reset();
    }
    const files = readdirSync(dir).sort();
    assert.equal(files.length, 2, files.join(', '));
    assert.notEqual(files[0], files[1]);
    for (const f of files) {
      assert.match(f, REPORT_NAME);
      assert.ok(f.includes('_20300102T030405Z_'), f);
    }
    // Both files hold a complete report.
    for (const f of files) assert.equal((JSON.parse(readFileSync(join(dir, f), 'utf8')) as Report).n, 50);
    assert.equal(reports.length, 2);
  });

  it('same seed → same pass counts and delta_ci; another seed → other cases', async () => {
    const a = (await run('top_k', { seed: 7 })).report;
    const b = (await run('top_k', { seed: 7, parallel: 1 })).report;
    assert.equal(a.baseline.passes, b.baseline.passes);
    assert.equal(a.candidate.passes, b.candidate.passes);
    assert.deepEqual(a.delta_ci, b.delta_ci);
    assert.deepEqual(a.statistics.paired, b.statistics.paired);
    assert.deepEqual(
      a.violations.map((v) => [v.case_index, v.kind, v.name]),
      b.violations.map((v) => [v.case_index, v.kind, v.name]),
    );
    assert.equal(a.seed, 7);
    const c = (await run('top_k', { seed: 8 })).report;
    assert.notDeepEqual(
      c.violations.map((v) => v.input),
      a.violations.map((v) => v.input),
      'a different seed generates different cases',
    );
  });
});

describe('every CI method gives a finite interval around the point estimate', () => {
  for (const ciMethod of ['bootstrap', 'bootstrap-bca', 'newcombe', 'wilson', 'bayesian'] as const) {
    it(ciMethod, async () => {
      const { report: r, text } = await run('top_k', { ciMethod, n: 150 });
      assert.equal(r.ci_method, ciMethod);
      assert.equal(r.config.ci_method, ciMethod);
      const [lo, hi] = r.delta_ci;
      const d = r.delta_pass_rate;
      assert.ok(Number.isFinite(lo) && Number.isFinite(hi), `[${lo}, ${hi}]`);
      assert.ok(lo <= hi && lo >= -1 && hi <= 1, `[${lo}, ${hi}]`);
      assert.ok(hi > lo, 'a non-degenerate interval (there are discordant cases)');
      const slack = ciMethod === 'newcombe' || ciMethod === 'wilson' ? 0 : 0.05;
      assert.ok(lo - slack <= d && d <= hi + slack, `${ciMethod}: ${d} outside [${lo}, ${hi}]`);
      if (ciMethod.startsWith('bootstrap')) assert.equal(r.statistics.bootstrap_samples, 1000);
      else assert.equal(r.statistics.bootstrap_samples, undefined);
      assert.doesNotMatch(text, /\bNaN\b|Infinity/);
    });
  }
});

describe('HTML and JUnit reports', () => {
  it('runEvaluation writes a self-contained HTML report and a JUnit XML report', async () => {
    const dir = freshDir('side-reports');
    const htmlReport = join(dir, 'out', 'report.html');
    const junitReport = join(dir, 'out', 'junit.xml');
    const options = resolveEvaluateOptions({ values: { task: 'top_k', n: 100, parallel: PARALLEL, reportDir: join(dir, 'json'), htmlReport, junitReport }, env: {} });
    const outcome = await runEvaluation(options);
    assert.equal(outcome.htmlPath, htmlReport);
    assert.equal(outcome.junitPath, junitReport);
    assert.ok(existsSync(outcome.reportPath));
    assert.match(outcome.reportPath.split('/').pop()!, REPORT_NAME);

    assert.ok(existsSync(htmlReport));
    const html = readFileSync(htmlReport, 'utf8');
    assert.match(html, /<svg/);
    assert.doesNotMatch(html, /https?:\/\//, 'no external references (no CDN)');
    assert.doesNotMatch(html, /<script\b[^>]*\bsrc=|<link\b[^>]*\bhref=/i);
    assert.match(html, /top_k/);

    assert.ok(existsSync(junitReport));
    const xml = readFileSync(junitReport, 'utf8');
    assert.ok(xml.startsWith('<?xml'), xml.slice(0, 40));
    assert.match(xml, /<testsuite[s]?\b/);
    assert.match(xml, /metaguard\.top_k/);
  });
});
