/**
 * Renders a `Report` as JUnit XML for CI systems: one `<testsuite name="metaguard.<task>">` with a
 * `gate` testcase (failing when the candidate is not adopted), informational pass-rate testcases per
 * role, and one failing testcase per candidate violation kind/name.
 */
import type { Report, RoleSummary, Violation } from './types.js';

/** How many case indices and example violations a violation testcase lists. */
const maxIndices = 10;
const maxExamples = 3;

const kindOrder: Readonly<Record<Violation['kind'], number>> = { property: 0, relation: 1, error: 2 };

// ---------------------------------------------------------------------------------------------------
// Escaping and formatting

/** Characters outside XML 1.0's Char production (C0 controls but tab/LF/CR, lone surrogates, U+FFFE/F). */
const invalidXmlChars = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

function stripInvalid(value: unknown): string {
  const text = typeof value === 'string' ? value : String(value);
  return text.replace(invalidXmlChars, '');
}

/** Escapes character data. */
function text(value: unknown): string {
  return stripInvalid(value).replace(/[&<>]/g, (ch) => (ch === '&' ? '&amp;' : ch === '<' ? '&lt;' : '&gt;'));
}

const attrEscapes: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
  '\t': '&#9;',
  '\n': '&#10;',
  '\r': '&#13;',
};

/** Escapes an attribute value (whitespace kept as character references so it survives normalization). */
function attr(value: unknown): string {
  return stripInvalid(value).replace(/[&<>"'\t\n\r]/g, (ch) => attrEscapes[ch] ?? ch);
}

function attrs(pairs: Readonly<Record<string, string | number>>): string {
  return Object.entries(pairs)
    .map(([k, v]) => ` ${k}="${attr(v)}"`)
    .join('');
}

function finite(x: number): boolean {
  return typeof x === 'number' && Number.isFinite(x);
}

function fmtInt(x: number): string {
  return finite(x) ? String(Math.round(x)) : 'n/a';
}

function fmtPct(x: number): string {
  return finite(x) ? `${(x * 100).toFixed(2)}%` : 'n/a';
}

function fmtPp(x: number): string {
  if (!finite(x)) return 'n/a';
  const s = (x * 100).toFixed(2);
  return `${x > 0 && Number(s) !== 0 ? '+' : ''}${Number(s) === 0 ? '0.00' : s} pp`;
}

function fmtTime(seconds: number): string {
  return finite(seconds) && seconds > 0 ? seconds.toFixed(3) : '0';
}

function fmtP(p: number): string {
  if (!finite(p)) return 'n/a';
  return p !== 0 && p < 1e-4 ? p.toExponential(2) : p.toFixed(4);
}

function errorSummary(summary: RoleSummary): string {
  const entries = Object.entries(summary.errors).filter((e): e is [string, number] => typeof e[1] === 'number' && e[1] > 0);
  if (entries.length === 0) return 'none';
  return entries
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([code, count]) => `${code}=${fmtInt(count)}`)
    .join(', ');
}

function minDeltaOf(report: Report): number | undefined {
  const v = report.config['min_delta'];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

// ---------------------------------------------------------------------------------------------------
// Test cases

interface TestCase {
  name: string;
  time?: number;
  failure?: { message: string; type: string; body: string };
  systemOut?: string;
}

function gateCase(report: Report): TestCase {
  const minDelta = minDeltaOf(report);
  const [lo, hi] = report.delta_ci;
  const lines = [
    `decision: ${report.decision.adopt ? 'ADOPT' : 'REJECT'} (${report.decision.reason})`,
    `n: ${fmtInt(report.n)}, seed: ${report.seed}`,
    `baseline pass rate: ${fmtPct(report.baseline.pass_rate)} (${fmtInt(report.baseline.passes)}/${fmtInt(report.baseline.total)})`,
    `candidate pass rate: ${fmtPct(report.candidate.pass_rate)} (${fmtInt(report.candidate.passes)}/${fmtInt(report.candidate.total)})`,
    `delta: ${fmtPp(report.delta_pass_rate)}, ${report.ci_method} CI [${fmtPp(lo)}, ${fmtPp(hi)}]` +
      (minDelta === undefined ? '' : `, min_delta ${fmtPp(minDelta)}`),
    `McNemar exact p: ${fmtP(report.statistics.mcnemar.exact_p)}, mid p: ${fmtP(report.statistics.mcnemar.mid_p)}`,
    `violations: ${fmtInt(report.violations_total)}`,
  ];
  const body = lines.join('\n');
  const test: TestCase = { name: 'gate', time: report.duration_seconds };
  if (report.decision.adopt) test.systemOut = body;
  else test.failure = { message: report.decision.reason, type: report.decision.reason, body };
  return test;
}

function roleCase(report: Report, role: 'baseline' | 'candidate'): TestCase {
  const s = report[role];
  const listed = report.violations.filter((v) => v.role === role).length;
  return {
    name: `${role}.pass_rate`,
    systemOut: [
      `pass rate: ${fmtPct(s.pass_rate)} (${fmtInt(s.passes)}/${fmtInt(s.total)})`,
      `property violations (cases): ${fmtInt(s.prop_violations)}`,
      `relation violations (cases): ${fmtInt(s.mr_violations)}`,
      `soft violations (cases): ${fmtInt(s.soft_violations)}`,
      `errors: ${errorSummary(s)}`,
      `duration ms: mean ${s.duration_ms.mean}, p50 ${s.duration_ms.p50}, p95 ${s.duration_ms.p95}, max ${s.duration_ms.max}`,
      `violations listed in report: ${listed}`,
    ].join('\n'),
  };
}

function violationCases(report: Report): TestCase[] {
  const groups = new Map<string, Violation[]>();
  for (const v of report.violations) {
    if (v.role !== 'candidate') continue;
    const key = `${v.kind}\u0000${v.name}`;
    const list = groups.get(key);
    if (list === undefined) groups.set(key, [v]);
    else list.push(v);
  }
  const capped = report.violations.length < report.violations_total;
  const sorted = [...groups.values()].sort((a, b) => {
    const [x] = a;
    const [y] = b;
    if (x === undefined || y === undefined) return 0;
    return kindOrder[x.kind] - kindOrder[y.kind] || (x.name < y.name ? -1 : x.name > y.name ? 1 : 0);
  });
  const cases: TestCase[] = [];
  for (const list of sorted) {
    const [first] = list;
    if (first === undefined) continue;
    const indices = [...new Set(list.map((v) => v.case_index))].sort((a, b) => a - b);
    const shown = indices.slice(0, maxIndices).join(', ') + (indices.length > maxIndices ? ', …' : '');
    const message = `${list.length} ${first.kind} violation${list.length === 1 ? '' : 's'} of ${first.name} in ${indices.length} case${indices.length === 1 ? '' : 's'}`;
    const lines = [
      `kind: ${first.kind}`,
      `name: ${first.name}`,
      `violations: ${list.length}`,
      `cases: ${indices.length}`,
      `first case indices: ${shown}`,
    ];
    if (capped) {
      lines.push(`(counted from the ${report.violations.length} violations kept in the report, of ${report.violations_total} in total)`);
    }
    for (const v of list.slice(0, maxExamples)) {
      lines.push('', `case ${v.case_index}:`, `  input: ${v.input}`);
      if (v.output !== undefined) lines.push(`  output: ${v.output}`);
      if (v.message !== undefined) lines.push(`  message: ${v.message}`);
    }
    cases.push({
      name: `candidate.${first.kind}.${first.name}`,
      failure: { message, type: first.kind, body: lines.join('\n') },
    });
  }
  return cases;
}

function renderCase(test: TestCase, classname: string): string {
  const open = `    <testcase${attrs({ classname, name: test.name, time: fmtTime(test.time ?? 0) })}`;
  const children: string[] = [];
  if (test.failure !== undefined) {
    const f = test.failure;
    children.push(`      <failure${attrs({ message: f.message, type: f.type })}>${text(f.body)}</failure>`);
  }
  if (test.systemOut !== undefined) children.push(`      <system-out>${text(test.systemOut)}</system-out>`);
  return children.length === 0 ? `${open}/>` : `${open}>\n${children.join('\n')}\n    </testcase>`;
}

/** Renders the report as a JUnit XML document. */
export function renderJunit(report: Report): string {
  const suite = `metaguard.${report.task}`;
  const cases: TestCase[] = [gateCase(report), roleCase(report, 'baseline'), roleCase(report, 'candidate'), ...violationCases(report)];
  const tests = cases.length;
  const failures = cases.filter((t) => t.failure !== undefined).length;
  const time = fmtTime(report.duration_seconds);
  const minDelta = minDeltaOf(report);
  const properties: Array<readonly [string, string]> = [
    ['task', report.task],
    ['n', fmtInt(report.n)],
    ['seed', String(report.seed)],
    ['ci_method', report.ci_method],
    ['decision', report.decision.adopt ? 'adopt' : 'reject'],
    ['reason', report.decision.reason],
    ['delta_pass_rate', String(report.delta_pass_rate)],
    ['delta_ci', `${report.delta_ci[0]},${report.delta_ci[1]}`],
    ...(minDelta === undefined ? [] : [['min_delta', String(minDelta)] as const]),
    ['violations_total', fmtInt(report.violations_total)],
    ['hash.task', report.hashes.task],
    ['hash.baseline', report.hashes.baseline],
    ['hash.candidate', report.hashes.candidate],
    ['dispatcher', report.dispatcher],
    ['metaguard_version', report.metaguard_version],
  ];
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites${attrs({ name: 'metaguard', tests, failures, errors: 0, time })}>`,
    `  <testsuite${attrs({ name: suite, tests, failures, errors: 0, skipped: 0, time, timestamp: report.started_at })}>`,
    '    <properties>',
    ...properties.map(([name, value]) => `      <property${attrs({ name, value })}/>`),
    '    </properties>',
    ...cases.map((t) => renderCase(t, suite)),
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
