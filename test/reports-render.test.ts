import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { renderHtml } from '../src/reports/html.js';
import { renderJunit } from '../src/reports/junit.js';
import type { Report, RoleSummary, Violation } from '../src/reports/types.js';

const hostile = '</script><script>alert(1)</script>';

function summary(overrides: Partial<RoleSummary> = {}): RoleSummary {
  return {
    passes: 180,
    total: 200,
    pass_rate: 0.9,
    prop_violations: 8,
    mr_violations: 6,
    errors: { E_TIMEOUT: 4, E_THROW: 2 },
    soft_violations: 3,
    duration_ms: { mean: 1.234, p50: 0.9, p95: 4.5, max: 120.75 },
    ...overrides,
  };
}

function sampleReport(overrides: Partial<Report> = {}): Report {
  return {
    task: 'top_k',
    n: 200,
    seed: 42,
    config: { min_delta: 0.02, alpha: 0.05, timeout_ms: 2000, policy: { strict: true } },
    hashes: { task: 'sha256:aaaa', baseline: 'sha256:bbbb', candidate: 'sha256:cccc' },
    baseline: summary(),
    candidate: summary({ passes: 190, pass_rate: 0.95, prop_violations: 0, mr_violations: 0, errors: {}, soft_violations: 1 }),
    delta_pass_rate: 0.05,
    delta_ci: [0.031, 0.072],
    ci_method: 'newcombe',
    decision: { adopt: true, reason: 'meets_gate' },
    statistics: {
      paired: { both_pass: 175, candidate_only: 15, baseline_only: 5, neither: 5 },
      mcnemar: { exact_p: 0.0414, mid_p: 0.0277, discordant: 20 },
      power: { estimated_power: 0.83, target_power: 0.8, recommended_n: 180 },
      alpha: 0.05,
      bootstrap_samples: 2000,
    },
    violations: [],
    violations_total: 0,
    started_at: '2024-05-01T10:00:00.000Z',
    finished_at: '2024-05-01T10:00:12.500Z',
    duration_seconds: 12.5,
    dispatcher: 'local',
    metaguard_version: '0.1.0',
    ...overrides,
  };
}

function violation(overrides: Partial<Violation>): Violation {
  return { role: 'candidate', case_index: 0, kind: 'property', name: 'sorted', input: '[[3,1,2],2]', ...overrides };
}

function rejectReport(): Report {
  const violations: Violation[] = [
    violation({ case_index: 7, input: `["${hostile}\u0001"]`, output: '"<b>&amp;</b>"', message: `boom ${hostile}` }),
    violation({ case_index: 3, output: '[3]', message: 'expected [3,2] && a < b' }),
    violation({ case_index: 3, output: '[3]', message: 'expected [3,2] (second check)' }),
    violation({ case_index: 12, kind: 'relation', name: 'permute_input', message: 'outputs differ' }),
    violation({ case_index: 19, kind: 'error', name: 'E_TIMEOUT', message: 'exceeded 2000 ms' }),
    violation({ role: 'baseline', case_index: 5, kind: 'error', name: 'E_THROW', message: "TypeError: can't read x" }),
  ];
  return sampleReport({
    task: `evil"task'<img src="https://evil.example/x.png">&${hostile}`,
    candidate: summary({ passes: 150, pass_rate: 0.75, prop_violations: 30, mr_violations: 12, errors: { E_TIMEOUT: 8 } }),
    delta_pass_rate: -0.15,
    delta_ci: [-0.22, -0.08],
    ci_method: 'bootstrap-bca',
    decision: { adopt: false, reason: 'violations' },
    violations,
    violations_total: 57,
    statistics: {
      paired: { both_pass: 140, candidate_only: 10, baseline_only: 40, neither: 10 },
      mcnemar: { exact_p: 0.00000123, mid_p: 0.00000088, discordant: 50 },
      power: { estimated_power: 0.05, target_power: 0.8, recommended_n: null },
      alpha: 0.05,
    },
    config: { min_delta: 0.02, note: `${hostile}\u0001`, [`key${hostile}`]: [1, 2, 3] },
  });
}

// ---------------------------------------------------------------------------------------------------
// A tiny strict markup parser: balanced tags, quoted attributes, no raw `<` in text, `&` only as entities.

interface Element {
  name: string;
  attrs: Map<string, string>;
  children: Element[];
  text: string;
}

const entity = /&(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);/y;
const invalidXmlChar = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

function checkEntities(s: string, where: string): void {
  for (let i = s.indexOf('&'); i !== -1; i = s.indexOf('&', i + 1)) {
    entity.lastIndex = i;
    assert.ok(entity.test(s), `bare '&' in ${where}: ${JSON.stringify(s.slice(i, i + 20))}`);
  }
}

function decode(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);/g, (_m, e: string) => {
    if (e.startsWith('#x')) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(parseInt(e.slice(1), 10));
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[e] ?? '';
  });
}

function parseMarkup(source: string, options: { voids?: ReadonlySet<string>; xml?: boolean } = {}): Element {
  const voids = options.voids ?? new Set<string>();
  const root: Element = { name: '#document', attrs: new Map(), children: [], text: '' };
  const stack: Element[] = [root];
  const token = /<!DOCTYPE[^>]*>|<\?xml[^>]*\?>|<\/([A-Za-z][\w:.-]*)\s*>|<([A-Za-z][\w:.-]*)((?:\s+[A-Za-z_:][\w:.-]*="[^"]*")*)\s*(\/?)>|([^<]+)|(<)/gy;
  let match: RegExpExecArray | null;
  let first = true;
  let end = 0;
  while ((match = token.exec(source)) !== null) {
    end = token.lastIndex;
    const [whole, closeName, openName, attrText, selfClose, textRun, strayLt] = match;
    const top = stack[stack.length - 1];
    assert.ok(top !== undefined);
    if (strayLt !== undefined) assert.fail(`raw '<' at ${match.index}: ${JSON.stringify(source.slice(match.index, match.index + 40))}`);
    if (whole.startsWith('<?xml')) {
      assert.ok(first, 'XML declaration must come first');
    } else if (whole.startsWith('<!DOCTYPE')) {
      assert.ok(!options.xml, 'no DOCTYPE expected');
    } else if (textRun !== undefined) {
      checkEntities(textRun, `text of <${top.name}>`);
      if (options.xml) assert.ok(!invalidXmlChar.test(textRun), `invalid XML character in text of <${top.name}>`);
      if (stack.length === 1) assert.match(textRun, /^\s*$/, 'text outside the root element');
      top.text += decode(textRun);
    } else if (closeName !== undefined) {
      assert.equal(closeName, top.name, `</${closeName}> closes <${top.name}>`);
      stack.pop();
    } else if (openName !== undefined) {
      const attrs = new Map<string, string>();
      for (const a of (attrText ?? '').matchAll(/\s+([A-Za-z_:][\w:.-]*)="([^"]*)"/g)) {
        const [, name = '', value = ''] = a;
        assert.ok(!attrs.has(name), `duplicate attribute ${name} on <${openName}>`);
        assert.ok(!value.includes('<'), `raw '<' in attribute ${name}`);
        checkEntities(value, `attribute ${name} of <${openName}>`);
        if (options.xml) assert.ok(!invalidXmlChar.test(value), `invalid XML character in attribute ${name}`);
        attrs.set(name, decode(value));
      }
      if (stack.length === 1) assert.equal(root.children.length, 0, 'more than one root element');
      const el: Element = { name: openName, attrs, children: [], text: '' };
      top.children.push(el);
      if (selfClose !== '/' && !voids.has(openName.toLowerCase())) stack.push(el);
    }
    first = false;
  }
  assert.equal(end, source.length, `unparsable markup at ${end}: ${JSON.stringify(source.slice(end, end + 40))}`);
  assert.equal(stack.length, 1, `unclosed elements: ${stack.map((e) => e.name).join(' > ')}`);
  assert.equal(root.children.length, 1, 'exactly one root element');
  return root;
}

function findAll(el: Element, name: string): Element[] {
  const out: Element[] = [];
  for (const child of el.children) {
    if (child.name === name) out.push(child);
    out.push(...findAll(child, name));
  }
  return out;
}

const htmlVoids = new Set(['meta', 'link', 'br', 'hr', 'img', 'input', 'col', 'wbr']);

/** Parses the HTML page (style contents removed: CSS legitimately contains `>`). */
function parseHtml(html: string): Element {
  const withoutStyle = html.replace(/<style>[^<]*<\/style>/, '<style></style>');
  return parseMarkup(withoutStyle, { voids: htmlVoids });
}

function allElements(el: Element): Element[] {
  return el.children.flatMap((child) => [child, ...allElements(child)]);
}

// ---------------------------------------------------------------------------------------------------

describe('renderHtml', () => {
  it('renders a self-contained page for an adopted candidate', () => {
    const html = renderHtml(sampleReport());
    assert.ok(html.startsWith('<!DOCTYPE html>'));
    assert.ok(html.includes('<svg'), 'inline SVG charts');
    assert.ok(!/https?:\/\//i.test(html), 'no http(s) references at all');
    assert.ok(!/<script/i.test(html), 'no scripts');
    assert.ok(!/<link\b|@import|url\(/i.test(html), 'no linked stylesheets, imports or url()');
    assert.ok(html.includes('ADOPT'));
    assert.ok(html.includes('meets_gate'));
    assert.ok(html.includes('95.00%') && html.includes('90.00%'), 'pass rates as percentages');
    assert.ok(html.includes('+5.00 pp'), 'delta in percentage points');
    assert.ok(html.includes('No violations.'));
    assert.ok(html.includes('sha256:cccc'));
    assert.ok(html.includes('min Δ'), 'min_delta line drawn');
    const doc = parseHtml(html);
    assert.ok(findAll(doc, 'svg').length >= 3, 'pass-rate, interval and outcome charts');
  });

  it('escapes hostile strings and references nothing remote for a rejected candidate', () => {
    const html = renderHtml(rejectReport());
    assert.ok(html.includes('REJECT'));
    assert.ok(html.includes('violations'), 'reason string');
    assert.ok(!/<script/i.test(html), 'hostile </script><script> must come out inert');
    assert.ok(html.includes('&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;'), 'hostile string escaped');
    assert.ok(!html.includes('\u0001'), 'control characters not emitted raw');
    assert.ok(html.includes('\\u0001'), 'control characters shown visibly');
    assert.ok(html.includes('&lt;b&gt;&amp;amp;&lt;/b&gt;'), 'output escaped');
    assert.ok(html.includes('Showing 6 of 57 violations.'));
    const doc = parseHtml(html);
    for (const el of allElements(doc)) {
      for (const [name, value] of el.attrs) {
        assert.ok(!/^(src|href|xlink:href|action|srcset|poster|background|data)$/i.test(name), `<${el.name} ${name}=…>`);
        if (name !== 'aria-label' && name !== 'content') assert.ok(!/https?:|\/\//i.test(value), `<${el.name} ${name}="${value}">`);
      }
    }
    assert.equal(findAll(doc, 'img').length, 0, 'the hostile <img> in the task name is text');
    assert.equal(findAll(doc, 'script').length, 0);
    const violationRows = findAll(doc, 'table').find((t) => (t.attrs.get('class') ?? '') === 'violations');
    assert.ok(violationRows !== undefined);
    assert.equal(findAll(violationRows, 'tr').length, 1 + 6);
  });

  it('keeps SVG coordinates finite for degenerate reports', () => {
    const empty = summary({
      passes: 0,
      total: 0,
      pass_rate: 0,
      prop_violations: 0,
      mr_violations: 0,
      errors: {},
      soft_violations: 0,
      duration_ms: { mean: 0, p50: 0, p95: 0, max: 0 },
    });
    const cases: Report[] = [
      sampleReport({ baseline: empty, candidate: empty, n: 0, delta_pass_rate: 0, delta_ci: [-1, 1], config: {} }),
      sampleReport({ delta_pass_rate: 0, delta_ci: [0, 0], config: { min_delta: 0 } }),
      sampleReport({ delta_pass_rate: 1, delta_ci: [1, 1] }),
      // Out-of-contract values must still not leak NaN into the SVG.
      sampleReport({ delta_pass_rate: Number.NaN, delta_ci: [Number.NEGATIVE_INFINITY, Number.NaN], candidate: summary({ pass_rate: Number.NaN }) }),
    ];
    for (const report of cases) {
      const html = renderHtml(report);
      const doc = parseHtml(html);
      const svgs = findAll(doc, 'svg');
      assert.ok(svgs.length >= 3);
      for (const svgEl of svgs) {
        for (const el of [svgEl, ...allElements(svgEl)]) {
          for (const [name, value] of el.attrs) {
            if (!/^(x|y|x1|x2|y1|y2|cx|cy|r|width|height|viewBox)$/.test(name)) continue;
            for (const part of value.split(/\s+/)) {
              const num = Number(part);
              assert.ok(Number.isFinite(num), `<${el.name} ${name}="${value}">`);
              if (name === 'width' || name === 'height' || name === 'r') assert.ok(num >= 0, `<${el.name} ${name}="${value}">`);
            }
          }
        }
      }
      assert.ok(!/NaN|Infinity/.test(html));
    }
  });
});

describe('renderJunit', () => {
  function suiteOf(xml: string): { suites: Element; suite: Element; testcases: Element[]; failures: Element[] } {
    assert.ok(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>'));
    const doc = parseMarkup(xml, { xml: true });
    const [suites] = doc.children;
    assert.ok(suites !== undefined);
    assert.equal(suites.name, 'testsuites');
    const all = findAll(suites, 'testsuite');
    assert.equal(all.length, 1);
    const [suite] = all;
    assert.ok(suite !== undefined);
    const testcases = findAll(suite, 'testcase');
    const failures = findAll(suite, 'failure');
    for (const el of [suites, suite]) {
      assert.equal(el.attrs.get('tests'), String(testcases.length), `${el.name} tests`);
      assert.equal(el.attrs.get('failures'), String(failures.length), `${el.name} failures`);
      assert.equal(el.attrs.get('errors'), '0');
    }
    for (const tc of testcases) assert.ok(findAll(tc, 'failure').length <= 1);
    return { suites, suite, testcases, failures };
  }

  it('passes the gate for an adopted candidate', () => {
    const xml = renderJunit(sampleReport());
    const { suite, testcases, failures } = suiteOf(xml);
    assert.equal(suite.attrs.get('name'), 'metaguard.top_k');
    assert.deepEqual(
      testcases.map((t) => t.attrs.get('name')),
      ['gate', 'baseline.pass_rate', 'candidate.pass_rate'],
    );
    assert.equal(failures.length, 0);
    const gate = testcases[0];
    assert.ok(gate !== undefined);
    assert.match(findAll(gate, 'system-out')[0]?.text ?? '', /ADOPT \(meets_gate\)/);
  });

  it('fails the gate with the reason and reports candidate violations per kind/name', () => {
    const report = rejectReport();
    const xml = renderJunit(report);
    assert.ok(!xml.includes('\u0001'), 'invalid XML characters stripped');
    assert.ok(!/<script/i.test(xml));
    const { suite, testcases, failures } = suiteOf(xml);
    assert.equal(suite.attrs.get('name'), `metaguard.${report.task}`, 'attribute round-trips through escaping');
    assert.deepEqual(
      testcases.map((t) => t.attrs.get('name')),
      [
        'gate',
        'baseline.pass_rate',
        'candidate.pass_rate',
        'candidate.property.sorted',
        'candidate.relation.permute_input',
        'candidate.error.E_TIMEOUT',
      ],
    );
    assert.equal(failures.length, 4);
    const byName = new Map(testcases.map((t) => [t.attrs.get('name'), t] as const));
    const gateFailure = findAll(byName.get('gate') ?? assert.fail('gate'), 'failure')[0];
    assert.equal(gateFailure?.attrs.get('message'), 'violations');
    assert.match(gateFailure?.text ?? '', /REJECT \(violations\)/);

    const sorted = findAll(byName.get('candidate.property.sorted') ?? assert.fail('sorted'), 'failure')[0];
    assert.ok(sorted !== undefined);
    assert.equal(sorted.attrs.get('message'), '3 property violations of sorted in 2 cases');
    assert.match(sorted.text, /first case indices: 3, 7\n/);
    assert.ok(sorted.text.includes(`["${hostile}"]`), 'hostile input round-trips, control character stripped');
    assert.ok(sorted.text.includes('of 57 in total'), 'capped list is flagged');
    assert.equal(findAll(byName.get('baseline.pass_rate') ?? assert.fail('baseline'), 'failure').length, 0);
    assert.equal(findAll(byName.get('candidate.pass_rate') ?? assert.fail('candidate'), 'failure').length, 0);
  });

  it('escapes every XML special character and strips invalid characters', () => {
    const report = sampleReport({ task: `a&b<c>d"e'f\u0000g\u0008h\u000Bi\uFFFEj\uD800k\tl` });
    const xml = renderJunit(report);
    const { suite } = suiteOf(xml);
    assert.equal(suite.attrs.get('name'), `metaguard.a&b<c>d"e'fghijk\tl`);
  });
});
