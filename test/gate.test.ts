/**
 * The verdict (src/gate/index.ts), gating policies (src/options/policy.ts) and where a policy ranks among
 * the option sources (resolveEvaluateOptions in src/evaluate.ts): defaults < env < policy < flags.
 *
 * Run: node --import tsx --test test/gate.test.ts
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import { MetaguardError } from '../src/errors.js';
import { resolveEvaluateOptions } from '../src/evaluate.js';
import { decide, type GateInput, type GateLimits } from '../src/gate/index.js';
import { loadPolicy } from '../src/options/policy.js';

const tmp = mkdtempSync(join(tmpdir(), 'mg-gate-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

let fileCounter = 0;
function tomlFile(text: string): string {
  const path = join(tmp, `policy-${++fileCounter}.toml`);
  writeFileSync(path, text);
  return path;
}

function throwsWith(fn: () => unknown, code: string, ...patterns: RegExp[]): MetaguardError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof MetaguardError, `expected a MetaguardError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const p of patterns) assert.match(caught.message, p);
  // One clear line: the CLI prints the message as is.
  assert.ok(!caught.message.includes('\n'), `message must be one line: ${JSON.stringify(caught.message)}`);
  return caught;
}

describe('decide()', () => {
  const limits: GateLimits = { violationCap: 0, minPassRate: 0.8, minDelta: 0.02 };
  const good: GateInput = { candidateViolations: 0, candidatePassRate: 0.95, deltaCi: [0.03, 0.09] };

  const table: Array<[string, Partial<GateInput>, Partial<GateLimits>, boolean, string]> = [
    ['everything within the gate', {}, {}, true, 'meets_gate'],
    ['one violation over a cap of 0', { candidateViolations: 1 }, {}, false, 'violations'],
    ['violations equal to the cap are allowed', { candidateViolations: 3 }, { violationCap: 3 }, true, 'meets_gate'],
    ['violations over a cap of 3', { candidateViolations: 4 }, { violationCap: 3 }, false, 'violations'],
    ['pass rate below the minimum', { candidatePassRate: 0.79 }, {}, false, 'pass_rate_below_min'],
    ['pass rate equal to the minimum is enough', { candidatePassRate: 0.8 }, {}, true, 'meets_gate'],
    ['CI lower bound below min_delta', { deltaCi: [0.019, 0.2] }, {}, false, 'ci_below_min_delta'],
    ['CI lower bound equal to min_delta is enough', { deltaCi: [0.02, 0.2] }, {}, true, 'meets_gate'],
    ['CI straddling zero', { deltaCi: [-0.01, 0.05] }, {}, false, 'ci_below_min_delta'],
    ['non-inferiority: CI above a negative min_delta', { deltaCi: [-0.04, 0.01] }, { minDelta: -0.05 }, true, 'meets_gate'],
    ['non-inferiority: CI below a negative min_delta', { deltaCi: [-0.06, 0.01] }, { minDelta: -0.05 }, false, 'ci_below_min_delta'],
    // Precedence: violations, then pass rate, then CI.
    ['violations win over pass rate and CI', { candidateViolations: 1, candidatePassRate: 0.1, deltaCi: [-0.5, -0.2] }, {}, false, 'violations'],
    ['pass rate wins over CI', { candidatePassRate: 0.5, deltaCi: [-0.5, -0.2] }, {}, false, 'pass_rate_below_min'],
    ['a good CI does not save a low pass rate', { candidatePassRate: 0.5, deltaCi: [0.3, 0.4] }, {}, false, 'pass_rate_below_min'],
    ['a perfect pass rate does not save violations', { candidateViolations: 2, candidatePassRate: 1, deltaCi: [0.3, 0.4] }, { violationCap: 1 }, false, 'violations'],
  ];
  for (const [label, input, lim, adopt, reason] of table) {
    it(`${label} → ${adopt ? 'adopt' : 'reject'} (${reason})`, () => {
      assert.deepEqual(decide({ ...good, ...input }, { ...limits, ...lim }), { adopt, reason });
    });
  }
});

describe('loadPolicy()', () => {
  it('reads every [gating] key of a TOML file, camel-cased for the evaluate schema', () => {
    const path = tomlFile(
      [
        '# a policy',
        '[gating]',
        'min_delta = 0.1',
        'min_pass_rate = 0.9',
        'violation_cap = 3',
        'alpha = 0.1',
        'ci_method = "newcombe"',
        'bootstrap_samples = 500',
        '',
        '[other]',
        'ignored = true',
      ].join('\n'),
    );
    assert.deepEqual(loadPolicy(path), {
      minDelta: 0.1,
      minPassRate: 0.9,
      violationCap: 3,
      alpha: 0.1,
      ciMethod: 'newcombe',
      bootstrapSamples: 500,
    });
  });

  it('an empty [gating] table is valid and sets nothing', () => {
    assert.deepEqual(loadPolicy(tomlFile('[gating]\n')), {});
  });

  it('superiority:margin=0.05 sets min_delta 0.05', () => {
    assert.deepEqual(loadPolicy('superiority:margin=0.05'), { minDelta: 0.05 });
  });

  it('noninferiority:margin=0.05 sets min_delta -0.05', () => {
    assert.deepEqual(loadPolicy('noninferiority:margin=0.05'), { minDelta: -0.05 });
  });

  it('a preset margin outside [0, 1] or not a number is MG_ERR_INVALID_POLICY', () => {
    for (const spec of ['superiority:margin=abc', 'superiority:margin=-0.1', 'noninferiority:margin=2', 'superiority:margin=']) {
      throwsWith(() => loadPolicy(spec), 'MG_ERR_INVALID_POLICY', /margin/);
    }
  });

  it('a preset without a margin is MG_ERR_INVALID_POLICY showing the syntax', () => {
    throwsWith(() => loadPolicy('superiority'), 'MG_ERR_INVALID_POLICY', /superiority:margin=X/);
    throwsWith(() => loadPolicy('noninferiority:0.05'), 'MG_ERR_INVALID_POLICY', /noninferiority:margin=X/);
  });

  it('malformed TOML is MG_ERR_INVALID_POLICY naming the file', () => {
    const path = tomlFile('[gating\nmin_delta = 0.1\n');
    throwsWith(() => loadPolicy(path), 'MG_ERR_INVALID_POLICY', /malformed TOML/, new RegExp(path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    throwsWith(() => loadPolicy(tomlFile('[gating]\nmin_delta = = 0.1\n')), 'MG_ERR_INVALID_POLICY', /malformed TOML/);
  });

  it('an unknown [gating] key is an error naming the key', () => {
    const err = throwsWith(() => loadPolicy(tomlFile('[gating]\nmin_delta = 0.1\nmin_detla = 0.2\n')), 'MG_ERR_INVALID_POLICY', /gating\.min_detla/);
    assert.match(err.message, /unknown key/);
    // Flags that are not gating keys are not policy keys either.
    throwsWith(() => loadPolicy(tomlFile('[gating]\nn = 5\n')), 'MG_ERR_INVALID_POLICY', /gating\.n\b/);
    // camelCase spellings are not the documented snake_case keys.
    throwsWith(() => loadPolicy(tomlFile('[gating]\nminDelta = 0.1\n')), 'MG_ERR_INVALID_POLICY', /gating\.minDelta/);
  });

  it('a file without a [gating] table is an error', () => {
    throwsWith(() => loadPolicy(tomlFile('min_delta = 0.1\n')), 'MG_ERR_INVALID_POLICY', /\[gating\]/);
    throwsWith(() => loadPolicy(tomlFile('')), 'MG_ERR_INVALID_POLICY', /\[gating\]/);
    throwsWith(() => loadPolicy(tomlFile('gating = 3\n')), 'MG_ERR_INVALID_POLICY', /\[gating\]/);
  });

  it('a missing policy file is MG_ERR_FILE_NOT_FOUND naming the path', () => {
    const missing = join(tmp, 'nope.toml');
    const err = throwsWith(() => loadPolicy(missing), 'MG_ERR_FILE_NOT_FOUND');
    assert.ok(err.message.includes(missing), err.message);
  });
});

describe('resolveEvaluateOptions() precedence: defaults < env < policy < flags', () => {
  const task = 'top_k';

  it('defaults', () => {
    const o = resolveEvaluateOptions({ flags: { task }, env: {} });
    assert.equal(o.task, 'top_k');
    assert.equal(o.n, 400);
    assert.equal(o.seed, 42);
    assert.equal(o.timeoutS, 2);
    assert.equal(o.memMb, 512);
    assert.equal(o.alpha, 0.05);
    assert.equal(o.minDelta, 0.02);
    assert.equal(o.minPassRate, 0.8);
    assert.equal(o.violationCap, 0);
    assert.equal(o.ciMethod, 'bootstrap');
    assert.equal(o.bootstrapSamples, 1000);
    assert.equal(o.dispatcher, 'local');
    assert.equal(o.reportDir, 'reports');
    assert.equal(o.json, false);
    assert.equal(o.policy, undefined);
    assert.ok(Object.isFrozen(o));
  });

  it('env overrides defaults (METAGUARD_N, METAGUARD_MIN_DELTA, METAGUARD_CI_METHOD)', () => {
    const o = resolveEvaluateOptions({ flags: { task }, env: { METAGUARD_N: '123', METAGUARD_MIN_DELTA: '0.07', METAGUARD_CI_METHOD: 'wilson' } });
    assert.equal(o.n, 123);
    assert.equal(o.minDelta, 0.07);
    assert.equal(o.ciMethod, 'wilson');
  });

  it('the task itself can come from METAGUARD_TASK', () => {
    assert.equal(resolveEvaluateOptions({ flags: {}, env: { METAGUARD_TASK: 'median' } }).task, 'median');
  });

  it('flags override env', () => {
    const o = resolveEvaluateOptions({ flags: { task, n: '50' }, env: { METAGUARD_N: '123' } });
    assert.equal(o.n, 50);
  });

  it('a policy overrides env and defaults, and leaves the other options alone', () => {
    const policy = tomlFile('[gating]\nmin_delta = 0.1\nci_method = "newcombe"\n');
    const o = resolveEvaluateOptions({ flags: { task, policy }, env: { METAGUARD_MIN_DELTA: '0.07', METAGUARD_CI_METHOD: 'wilson', METAGUARD_N: '123' } });
    assert.equal(o.minDelta, 0.1);
    assert.equal(o.ciMethod, 'newcombe');
    assert.equal(o.n, 123, 'env still applies to keys the policy does not set');
    assert.equal(o.minPassRate, 0.8, 'defaults still apply to keys neither sets');
    assert.equal(o.policy, policy);
  });

  it('flags override the policy', () => {
    const policy = tomlFile('[gating]\nmin_delta = 0.1\nmin_pass_rate = 0.9\n');
    const o = resolveEvaluateOptions({ flags: { task, policy, minDelta: '0.2' }, env: { METAGUARD_MIN_DELTA: '0.07' } });
    assert.equal(o.minDelta, 0.2);
    assert.equal(o.minPassRate, 0.9);
  });

  it('programmatic values rank like flags', () => {
    const o = resolveEvaluateOptions({ values: { task, policy: 'noninferiority:margin=0.05', alpha: 0.1 }, env: { METAGUARD_ALPHA: '0.2', METAGUARD_MIN_DELTA: '0.3' } });
    assert.equal(o.minDelta, -0.05);
    assert.equal(o.alpha, 0.1);
  });

  it('presets rank like a policy file', () => {
    assert.equal(resolveEvaluateOptions({ flags: { task, policy: 'superiority:margin=0.05' }, env: { METAGUARD_MIN_DELTA: '0.3' } }).minDelta, 0.05);
    assert.equal(resolveEvaluateOptions({ flags: { task, policy: 'noninferiority:margin=0.05' }, env: {} }).minDelta, -0.05);
    assert.equal(resolveEvaluateOptions({ flags: { task, policy: 'noninferiority:margin=0.05', minDelta: '0' }, env: {} }).minDelta, 0);
  });

  it('the policy can be given by METAGUARD_POLICY', () => {
    const o = resolveEvaluateOptions({ flags: { task }, env: { METAGUARD_POLICY: 'superiority:margin=0.05' } });
    assert.equal(o.minDelta, 0.05);
  });

  it('an invalid env value names the variable', () => {
    throwsWith(() => resolveEvaluateOptions({ flags: { task }, env: { METAGUARD_N: 'abc' } }), 'MG_ERR_INVALID_OPTION', /^METAGUARD_N: /);
  });

  it('an invalid flag value names the flag', () => {
    throwsWith(() => resolveEvaluateOptions({ flags: { task, n: '0' }, env: {} }), 'MG_ERR_INVALID_OPTION', /^--n: /);
    throwsWith(() => resolveEvaluateOptions({ flags: { task, ciMethod: 'exact' }, env: {} }), 'MG_ERR_INVALID_OPTION', /^--ci-method: /);
  });

  it('an invalid policy value is an error naming the policy file', () => {
    const policy = tomlFile('[gating]\nmin_pass_rate = 1.5\n');
    const err = throwsWith(() => resolveEvaluateOptions({ flags: { task, policy }, env: {} }), 'MG_ERR_INVALID_OPTION', /at most 1/);
    assert.ok(err.message.includes(policy), err.message);
  });

  it('an invalid policy value is named by its [gating] key as written in the file', () => {
    const policy = tomlFile('[gating]\nmin_pass_rate = 1.5\n');
    throwsWith(() => resolveEvaluateOptions({ flags: { task, policy }, env: {} }), 'MG_ERR_INVALID_OPTION', /min_pass_rate/);
  });

  it('a missing --task is an error naming --task', () => {
    throwsWith(() => resolveEvaluateOptions({ flags: {}, env: {} }), 'MG_ERR_INVALID_OPTION', /^--task: /);
  });

  it('an unknown programmatic option is MG_ERR_UNKNOWN_OPTION naming it', () => {
    throwsWith(() => resolveEvaluateOptions({ values: { task, samples: 5 }, env: {} }), 'MG_ERR_UNKNOWN_OPTION', /^samples: /);
  });
});
