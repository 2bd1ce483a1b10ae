/**
 * The `metaguard` command line (src/cli/*.ts), run from source in child processes: verdict exit codes,
 * the summary and --json output, one-line errors with exit 2 (78 for `worker`), --help, and `demo`.
 *
 * Run: node --import tsx --test test/cli.test.ts
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { lines, runCli, type CliResult } from './helpers/run-cli.js';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
const fixture = (name: string) => join(fixtures, name);

const tmp = mkdtempSync(join(tmpdir(), 'mg-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let dirCounter = 0;
const freshDir = (label: string) => join(tmp, `${label}-${++dirCounter}`);

/** Exactly one non-empty stderr line, returned. */
function oneLine(r: CliResult): string {
  const ls = lines(r.stderr);
  assert.equal(ls.length, 1, `expected exactly one stderr line, got ${ls.length}:\n${r.stderr}`);
  return ls[0];
}

function describeRun(r: CliResult): string {
  return `exit ${r.code} (signal ${r.signal})\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
}

describe('metaguard evaluate: verdicts', { concurrency: 2 }, () => {
  it('top_k exits 0, prints ADOPTED and the report path', async () => {
    const dir = freshDir('top_k');
    const r = await runCli(['evaluate', '--task', 'top_k', '--n', '100', '--report-dir', dir]);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /ADOPTED/);
    assert.doesNotMatch(r.stdout, /REJECTED/);
    assert.match(r.stdout, /meets_gate/);
    const files = readdirSync(dir);
    assert.equal(files.length, 1, files.join(', '));
    assert.match(files[0], /^report_top_k_\d{8}T\d{6}Z_[0-9a-f]{8}\.json$/);
    // The printed path (absolute, or relative to the working directory) is the file that was written.
    const m = /report\s+(\S+\.json)/.exec(r.stdout);
    assert.ok(m, `no report path in:\n${r.stdout}`);
    const printed = isAbsolute(m[1]) ? m[1] : resolve(process.cwd(), m[1]);
    assert.equal(printed, join(dir, files[0]));
    const report = JSON.parse(readFileSync(printed, 'utf8'));
    assert.equal(report.n, 100);
    assert.equal(report.decision.adopt, true);
    // Summary mentions Δ pass rate, CI and method.
    assert.match(r.stdout, /CI/);
    assert.match(r.stdout, /bootstrap/);
  });

  it('median exits 1 and prints REJECTED', async () => {
    const dir = freshDir('median');
    const r = await runCli(['evaluate', '--task', 'median', '--n', '100', '--report-dir', dir]);
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stdout, /REJECTED/);
    assert.doesNotMatch(r.stdout, /ADOPTED/);
    assert.equal(readdirSync(dir).length, 1);
  });

  it('--json prints the report on stdout, parseable', async () => {
    const dir = freshDir('json');
    const r = await runCli(['evaluate', '--task', 'top_k', '--n', '60', '--seed', '3', '--ci-method', 'newcombe', '--report-dir', dir, '--json']);
    assert.equal(r.code, 0, describeRun(r));
    const report = JSON.parse(r.stdout);
    assert.equal(report.task, 'top_k');
    assert.equal(report.n, 60);
    assert.equal(report.seed, 3);
    assert.equal(report.ci_method, 'newcombe');
    assert.deepEqual(report.decision, { adopt: true, reason: 'meets_gate', counted_violations: 0, counted_errors: 0 });
    // Same report as the file written.
    const [file] = readdirSync(dir);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, file), 'utf8')), report);
  });

  it('flags override METAGUARD_* variables', async () => {
    const dir = freshDir('env');
    const r = await runCli(['evaluate', '--task', 'top_k', '--n', '40', '--json'], { env: { METAGUARD_N: '77', METAGUARD_SEED: '9', METAGUARD_REPORT_DIR: dir } });
    assert.equal(r.code, 0, describeRun(r));
    const report = JSON.parse(r.stdout);
    assert.equal(report.n, 40, 'the flag wins over METAGUARD_N');
    assert.equal(report.seed, 9, 'METAGUARD_SEED applies');
    assert.equal(readdirSync(dir).length, 1, 'METAGUARD_REPORT_DIR applies');
  });
});

describe('metaguard evaluate: errors exit 2 with one line', { concurrency: 2 }, () => {
  const reportDir = freshDir('errors');
  const evaluate = (...args: string[]) => runCli(['evaluate', '--report-dir', reportDir, ...args]);
  after(() => assert.ok(!existsSync(reportDir) || readdirSync(reportDir).length === 0, 'no report is written for an error'));

  it('a missing --task file names the path', async () => {
    const missing = join(tmp, 'no', 'such', 'task.mjs');
    const r = await evaluate('--task', missing);
    assert.equal(r.code, 2, describeRun(r));
    assert.ok(oneLine(r).includes(missing), r.stderr);
    assert.equal(r.stdout, '');
  });

  it('a task without gen', async () => {
    const r = await evaluate('--task', fixture('no-gen-task.mjs'), '--baseline', fixture('good.mjs'), '--candidate', fixture('good.mjs'));
    assert.equal(r.code, 2, describeRun(r));
    const line = oneLine(r);
    assert.match(line, /\bgen\b/);
    assert.ok(line.includes('no-gen-task.mjs'), line);
  });

  let noSolve: Promise<CliResult> | undefined;
  const runNoSolve = () => (noSolve ??= evaluate('--task', fixture('length-task.mjs'), '--baseline', fixture('good.mjs'), '--candidate', fixture('no-solve.mjs'), '--n', '10'));

  it('an implementation without solve', async () => {
    const r = await runNoSolve();
    assert.equal(r.code, 2, describeRun(r));
    const line = oneLine(r);
    assert.match(line, /solve/);
    assert.ok(line.includes('no-solve.mjs'), line);
  });

  it('an implementation without solve is reported by its path, like every other error', async () => {
    const line = oneLine(await runNoSolve());
    assert.ok(line.includes(fixture('no-solve.mjs')), line);
    assert.doesNotMatch(line, /MetaguardError|file:\/\//);
  });

  it('--n 0 names --n', async () => {
    const r = await evaluate('--task', 'top_k', '--n', '0');
    assert.equal(r.code, 2, describeRun(r));
    assert.match(oneLine(r), /--n\b/);
  });

  it('an unknown --ci-method names --ci-method', async () => {
    const r = await evaluate('--task', 'top_k', '--ci-method', 'exact');
    assert.equal(r.code, 2, describeRun(r));
    const line = oneLine(r);
    assert.match(line, /--ci-method/);
    assert.match(line, /bootstrap/, 'lists the accepted methods');
  });

  it('a malformed policy file', async () => {
    const policy = join(tmp, 'malformed.toml');
    writeFileSync(policy, '[gating\nmin_delta = 0.1\n');
    const r = await evaluate('--task', 'top_k', '--policy', policy);
    assert.equal(r.code, 2, describeRun(r));
    const line = oneLine(r);
    assert.ok(line.includes(policy), line);
    assert.match(line, /TOML/);
  });

  it('a policy file with an unknown key names the key', async () => {
    const policy = join(tmp, 'unknown-key.toml');
    writeFileSync(policy, '[gating]\nmin_detla = 0.1\n');
    const r = await evaluate('--task', 'top_k', '--policy', policy);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(oneLine(r), /min_detla/);
  });

  it('an unknown flag', async () => {
    const r = await evaluate('--task', 'top_k', '--frobnicate');
    assert.equal(r.code, 2, describeRun(r));
    assert.match(oneLine(r), /--frobnicate/);
  });

  it('--queue-config that is not JSON', async () => {
    const r = await evaluate('--task', 'top_k', '--dispatcher', 'queue', '--queue-config', '{backend: memory');
    assert.equal(r.code, 2, describeRun(r));
    const line = oneLine(r);
    assert.match(line, /--queue-config/);
    assert.match(line, /JSON/);
  });

  it('an invalid METAGUARD_N names the variable', async () => {
    const r = await runCli(['evaluate', '--task', 'top_k', '--report-dir', reportDir], { env: { METAGUARD_N: 'lots' } });
    assert.equal(r.code, 2, describeRun(r));
    assert.match(oneLine(r), /METAGUARD_N\b/);
  });
});

describe('--help', { concurrency: 2 }, () => {
  const helps = new Map<string, Promise<CliResult>>();
  const help = (command: string) => {
    if (!helps.has(command)) helps.set(command, runCli([command, '--help']));
    return helps.get(command)!;
  };

  for (const command of ['evaluate', 'demo', 'worker', 'queue']) {
    it(`${command} --help exits 0 with usage on stdout`, async () => {
      const r = await help(command);
      assert.equal(r.code, 0, describeRun(r));
      assert.match(r.stdout, new RegExp(`Usage: metaguard ${command}`));
      assert.equal(lines(r.stderr).length, 0, r.stderr);
    });
  }

  it('evaluate --help lists the docs/reference.md flags', async () => {
    const r = await help('evaluate');
    for (const flag of ['--task', '--baseline', '--candidate', '--n', '--seed', '--timeout-s', '--mem-mb', '--alpha', '--min-delta', '--min-pass-rate', '--violation-cap', '--ci-method', '--bootstrap-samples', '--policy', '--dispatcher', '--queue-config', '--parallel', '--report-dir', '--html-report', '--junit-report', '--json']) {
      assert.ok(r.stdout.includes(flag), `--help should mention ${flag}`);
    }
  });
});

describe('metaguard demo', () => {
  it('exits 0 and prints both verdicts', async () => {
    const cwd = freshDir('demo');
    mkdirSync(cwd, { recursive: true });
    const r = await runCli(['demo'], { cwd });
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /top_k: candidate ADOPTED/);
    assert.match(r.stdout, /median: candidate REJECTED/);
    // Its reports go to ./reports of the working directory.
    const reports = readdirSync(join(cwd, 'reports'));
    assert.equal(reports.filter((f) => f.startsWith('report_top_k_')).length, 1, reports.join(', '));
    assert.equal(reports.filter((f) => f.startsWith('report_median_')).length, 1, reports.join(', '));
  });
});

describe('metaguard worker: bad configuration exits 78 with one line', { concurrency: 2 }, () => {
  it('--threads 0 names --threads', async () => {
    const r = await runCli(['worker', '--threads', '0'], { timeoutMs: 60_000 });
    assert.equal(r.code, 78, describeRun(r));
    assert.match(oneLine(r), /--threads\b/);
  });

  it('METAGUARD_THREADS=abc names METAGUARD_THREADS', async () => {
    const r = await runCli(['worker'], { env: { METAGUARD_THREADS: 'abc' }, timeoutMs: 60_000 });
    assert.equal(r.code, 78, describeRun(r));
    assert.match(oneLine(r), /METAGUARD_THREADS\b/);
  });

  it('an unknown queue-config key names queue-config.bogus', async () => {
    const r = await runCli(['worker', '--queue-config', '{"bogus":1}'], { timeoutMs: 60_000 });
    assert.equal(r.code, 78, describeRun(r));
    assert.match(oneLine(r), /queue-config\.bogus\b/);
  });
});

describe('metaguard (no command)', () => {
  it('an unknown command exits 2 with one line', async () => {
    const r = await runCli(['frobnicate']);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(oneLine(r), /frobnicate/);
  });
});
