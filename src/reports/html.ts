/**
 * Renders a `Report` as ONE self-contained HTML page: inline CSS, charts as inline SVG, no scripts and
 * no external resources (a Content-Security-Policy forbids loading anything). Every string taken from
 * the report is escaped: task names, inputs, outputs and messages are user-controlled.
 */
import type { DecisionReason, Report, RoleSummary, Violation } from './types.js';

type Role = 'baseline' | 'candidate';
const roles: readonly Role[] = ['baseline', 'candidate'];

const reasonText: Readonly<Record<DecisionReason, string>> = {
  meets_gate: 'the candidate meets the adoption gate',
  incomplete: 'some cases could not be delivered: the verdict is withheld',
  violations: 'the candidate violated properties or relations, or errored where the baseline did not, more often than the violation cap allows',
  pass_rate_below_min: 'the candidate pass rate is below the required minimum',
  ci_below_min_delta: 'the confidence interval of the pass-rate delta does not clear min_delta',
};

const colors = {
  baseline: '#5c6bc0',
  candidate: '#00897b',
  pass: '#2e7d32',
  property: '#ef6c00',
  relation: '#8e24aa',
  error: '#c62828',
  other: '#9e9e9e',
  adopt: '#2e7d32',
  reject: '#c62828',
  minDelta: '#ef6c00',
} as const;

// ---------------------------------------------------------------------------------------------------
// Escaping and formatting

const htmlEscapes: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/**
 * Escapes text for element content and quoted attribute values. Control characters other than tab,
 * newline and carriage return (and lone surrogates) are shown as visible `\uXXXX` escapes.
 */
function esc(value: unknown): string {
  const text = typeof value === 'string' ? value : String(value);
  return text
    .replace(/[&<>"']/g, (ch) => htmlEscapes[ch] ?? ch)
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\uFFFE\uFFFF]|\p{Cs}/gu, (ch) =>
      `\\u${ch.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`,
    );
}

function finite(x: number): boolean {
  return typeof x === 'number' && Number.isFinite(x);
}

/** A coordinate for SVG: always a finite number with at most two decimals. */
function c(x: number): string {
  if (!finite(x)) return '0';
  const r = Math.round(x * 100) / 100;
  return Object.is(r, -0) ? '0' : String(r);
}

function clamp(x: number, lo: number, hi: number): number {
  if (!finite(x)) return lo;
  return Math.min(hi, Math.max(lo, x));
}

function fmtInt(x: number): string {
  return finite(x) ? String(Math.round(x)) : '—';
}

function fmtPct(x: number, digits = 2): string {
  return finite(x) ? `${(x * 100).toFixed(digits)}%` : '—';
}

/** A signed difference of rates, in percentage points. */
function fmtPp(x: number, digits = 2): string {
  if (!finite(x)) return '—';
  const v = x * 100;
  const s = Math.abs(v).toFixed(digits);
  if (Number(s) === 0) return `${(0).toFixed(digits)} pp`;
  return `${v > 0 ? '+' : '\u2212'}${s} pp`;
}

function fmtNum(x: number, digits = 3): string {
  if (!finite(x)) return '—';
  if (Number.isInteger(x)) return String(x);
  return String(Number(x.toFixed(digits)));
}

function fmtP(p: number): string {
  if (!finite(p)) return '—';
  if (p !== 0 && p < 1e-4) return p.toExponential(2);
  return p.toFixed(4);
}

function fmtMs(ms: number): string {
  if (!finite(ms)) return '—';
  if (Math.abs(ms) < 10) return `${ms.toFixed(2)} ms`;
  if (Math.abs(ms) < 1000) return `${ms.toFixed(1)} ms`;
  return `${Math.round(ms)} ms`;
}

function fmtSeconds(s: number): string {
  return finite(s) ? `${s.toFixed(s < 10 ? 2 : 1)} s` : '—';
}

/** A config value as display text: strings verbatim, everything else as JSON where possible. */
function displayValue(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return '[function]';
  if (typeof value === 'bigint') return `${value}n`;
  try {
    const json = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
    return json ?? String(value);
  } catch {
    return String(value);
  }
}

function minDeltaOf(report: Report): number | undefined {
  const v = report.config['min_delta'];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function errorTotal(summary: RoleSummary): number {
  let total = 0;
  for (const count of Object.values(summary.errors)) if (typeof count === 'number' && finite(count)) total += count;
  return total;
}

function errorCodes(report: Report): string[] {
  const codes = new Set<string>();
  for (const role of roles) for (const code of Object.keys(report[role].errors)) codes.add(code);
  return [...codes].sort();
}

function errorCount(summary: RoleSummary, code: string): number {
  const v = (summary.errors as Record<string, number | undefined>)[code];
  return typeof v === 'number' ? v : 0;
}

// ---------------------------------------------------------------------------------------------------
// Charts

/** Round tick step for a span: 1, 2 or 5 times a power of ten. */
function niceStep(span: number, targetTicks: number): number {
  const rough = span / targetTicks;
  if (!(rough > 0) || !finite(rough)) return 1;
  const pow = 10 ** Math.floor(Math.log10(rough));
  const m = rough / pow;
  return pow * (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10);
}

function passRateChart(report: Report): string {
  const width = 380;
  const height = 256;
  const top = 40;
  const bottom = 40;
  const left = 46;
  const plotH = height - top - bottom;
  const plotW = width - left - 16;
  const y = (rate: number): number => top + plotH * (1 - clamp(rate, 0, 1));
  const parts: string[] = [];
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(
      `<line class="grid" x1="${c(left)}" x2="${c(left + plotW)}" y1="${c(y(tick))}" y2="${c(y(tick))}"/>`,
      `<text x="${c(left - 6)}" y="${c(y(tick) + 4)}" text-anchor="end">${tick * 100}%</text>`,
    );
  }
  const barW = 80;
  const slot = plotW / roles.length;
  roles.forEach((role, i) => {
    const rate = report[role].pass_rate;
    const x = left + slot * i + (slot - barW) / 2;
    const yTop = y(rate);
    parts.push(
      `<rect x="${c(x)}" y="${c(yTop)}" width="${c(barW)}" height="${c(top + plotH - yTop)}" fill="${colors[role]}">` +
        `<title>${esc(`${role}: ${fmtPct(rate)} (${fmtInt(report[role].passes)} / ${fmtInt(report[role].total)})`)}</title></rect>`,
      `<text x="${c(x + barW / 2)}" y="${c(yTop - 6)}" text-anchor="middle" class="strong">${esc(fmtPct(rate))}</text>`,
      `<text x="${c(x + barW / 2)}" y="${c(top + plotH + 18)}" text-anchor="middle">${role}</text>`,
    );
  });
  const [lo, hi] = report.delta_ci;
  parts.push(
    `<text x="${c(width / 2)}" y="18" text-anchor="middle" class="strong">` +
      `${esc(`Δ = ${fmtPp(report.delta_pass_rate)}  [${fmtPp(lo)}, ${fmtPp(hi)}]`)}</text>`,
  );
  const label = `Pass rates: baseline ${fmtPct(report.baseline.pass_rate)}, candidate ${fmtPct(report.candidate.pass_rate)}`;
  return svg(width, height, label, parts);
}

function intervalChart(report: Report): string {
  const width = 640;
  const height = 130;
  const left = 40;
  const right = 40;
  const axisY = 92;
  const plotW = width - left - right;
  const minDelta = minDeltaOf(report);
  let [lo, hi] = report.delta_ci;
  lo = finite(lo) ? lo : 0;
  hi = finite(hi) ? hi : 0;
  if (lo > hi) [lo, hi] = [hi, lo];
  const point = finite(report.delta_pass_rate) ? report.delta_pass_rate : (lo + hi) / 2;
  const values = [lo, hi, point, 0, ...(minDelta === undefined ? [] : [minDelta])];
  const vMin = Math.min(...values);
  const vMax = Math.max(...values);
  const pad = Math.max((vMax - vMin) * 0.08, 0.01);
  const d0 = vMin - pad;
  const d1 = vMax + pad;
  const x = (v: number): number => left + ((v - d0) / (d1 - d0)) * plotW;
  /** Labels near either edge grow inwards instead of being clipped. */
  const anchor = (px: number): string => (px < left + 40 ? 'start' : px > left + plotW - 40 ? 'end' : 'middle');

  const parts: string[] = [
    `<line class="axis" x1="${c(left)}" x2="${c(left + plotW)}" y1="${c(axisY)}" y2="${c(axisY)}"/>`,
  ];
  const step = niceStep(d1 - d0, 6);
  const digits = step * 100 >= 1 ? 0 : step * 100 >= 0.1 ? 1 : 2;
  for (let k = Math.ceil(d0 / step); k * step <= d1 && parts.length < 80; k++) {
    const v = k * step;
    parts.push(
      `<line class="axis" x1="${c(x(v))}" x2="${c(x(v))}" y1="${c(axisY)}" y2="${c(axisY + 5)}"/>`,
      `<text x="${c(x(v))}" y="${c(axisY + 18)}" text-anchor="middle">${esc(fmtPp(v, digits))}</text>`,
    );
  }
  parts.push(
    `<line class="zero" x1="${c(x(0))}" x2="${c(x(0))}" y1="14" y2="${c(axisY)}"/>`,
    `<text x="${c(x(0))}" y="10" text-anchor="middle">0</text>`,
  );
  if (minDelta !== undefined) {
    parts.push(
      `<line x1="${c(x(minDelta))}" x2="${c(x(minDelta))}" y1="24" y2="${c(axisY)}" stroke="${colors.minDelta}" stroke-width="1.5" stroke-dasharray="5 3"/>`,
      `<text x="${c(x(minDelta))}" y="22" text-anchor="${anchor(x(minDelta))}" fill="${colors.minDelta}" class="colored">${esc(`min Δ ${fmtPp(minDelta)}`)}</text>`,
    );
  }
  const color = report.decision.adopt ? colors.adopt : colors.reject;
  const ciY = 56;
  parts.push(
    `<line x1="${c(x(lo))}" x2="${c(x(hi))}" y1="${ciY}" y2="${ciY}" stroke="${color}" stroke-width="4" stroke-linecap="butt">` +
      `<title>${esc(`${report.ci_method} CI [${fmtPp(lo)}, ${fmtPp(hi)}]`)}</title></line>`,
    `<line x1="${c(x(lo))}" x2="${c(x(lo))}" y1="${ciY - 9}" y2="${ciY + 9}" stroke="${color}" stroke-width="2"/>`,
    `<line x1="${c(x(hi))}" x2="${c(x(hi))}" y1="${ciY - 9}" y2="${ciY + 9}" stroke="${color}" stroke-width="2"/>`,
    `<circle cx="${c(x(point))}" cy="${ciY}" r="6" fill="${color}" stroke="#fff" stroke-width="1.5">` +
      `<title>${esc(`Δ = ${fmtPp(point)}`)}</title></circle>`,
    `<text x="${c(x(point))}" y="${ciY + 24}" text-anchor="${anchor(x(point))}" class="strong">${esc(fmtPp(point))}</text>`,
  );
  const label = `Pass-rate delta ${fmtPp(point)} with ${report.ci_method} interval [${fmtPp(lo)}, ${fmtPp(hi)}]`;
  return svg(width, height, label, parts);
}

interface Segment {
  key: 'pass' | 'property' | 'relation' | 'error' | 'other';
  label: string;
  count: number;
}

function outcomeSegments(summary: RoleSummary): Segment[] {
  const nonNeg = (v: number): number => (finite(v) && v > 0 ? v : 0);
  const segments: Segment[] = [
    { key: 'pass', label: 'pass', count: nonNeg(summary.passes) },
    { key: 'property', label: 'property violation', count: nonNeg(summary.prop_violations) },
    { key: 'relation', label: 'relation violation', count: nonNeg(summary.mr_violations) },
    { key: 'error', label: 'error', count: nonNeg(errorTotal(summary)) },
  ];
  const listed = segments.reduce((sum, s) => sum + s.count, 0);
  const other = nonNeg(summary.total) - listed;
  if (other > 0) segments.push({ key: 'other', label: 'other failure', count: other });
  return segments;
}

function outcomeChart(report: Report): string {
  const width = 640;
  const left = 86;
  const right = 12;
  const rowH = 26;
  const gap = 14;
  const top = 8;
  const plotW = width - left - right;
  const parts: string[] = [];
  roles.forEach((role, i) => {
    const summary = report[role];
    const segments = outcomeSegments(summary);
    const denom = Math.max(finite(summary.total) ? summary.total : 0, segments.reduce((s, seg) => s + seg.count, 0));
    const y = top + i * (rowH + gap);
    parts.push(`<text x="${c(left - 8)}" y="${c(y + rowH / 2 + 4)}" text-anchor="end">${role}</text>`);
    if (denom <= 0) {
      parts.push(
        `<rect class="empty" x="${c(left)}" y="${c(y)}" width="${c(plotW)}" height="${c(rowH)}"/>`,
        `<text x="${c(left + plotW / 2)}" y="${c(y + rowH / 2 + 4)}" text-anchor="middle">no cases</text>`,
      );
      return;
    }
    let x = left;
    for (const seg of segments) {
      if (seg.count <= 0) continue;
      const w = (seg.count / denom) * plotW;
      parts.push(
        `<rect x="${c(x)}" y="${c(y)}" width="${c(w)}" height="${c(rowH)}" fill="${colors[seg.key]}">` +
          `<title>${esc(`${role}: ${seg.label} ${fmtInt(seg.count)} (${fmtPct(seg.count / denom, 1)})`)}</title></rect>`,
      );
      if (w >= 34) {
        parts.push(
          `<text x="${c(x + w / 2)}" y="${c(y + rowH / 2 + 4)}" text-anchor="middle" class="on-bar">${fmtInt(seg.count)}</text>`,
        );
      }
      x += w;
    }
  });
  const legendY = top + roles.length * (rowH + gap) + 4;
  let lx = left;
  for (const [key, label] of [
    ['pass', 'pass'],
    ['property', 'property'],
    ['relation', 'relation'],
    ['error', 'error'],
    ['other', 'other'],
  ] as const) {
    parts.push(
      `<rect x="${c(lx)}" y="${c(legendY)}" width="12" height="12" fill="${colors[key]}"/>`,
      `<text x="${c(lx + 16)}" y="${c(legendY + 10)}">${label}</text>`,
    );
    lx += 92;
  }
  const height = legendY + 20;
  const label = roles
    .map((role) => `${role}: ${outcomeSegments(report[role]).map((s) => `${s.label} ${fmtInt(s.count)}`).join(', ')}`)
    .join('; ');
  return svg(width, height, `Outcomes per role. ${label}`, parts);
}

function svg(width: number, height: number, label: string, parts: readonly string[]): string {
  return (
    `<svg class="chart" viewBox="0 0 ${c(width)} ${c(height)}" width="${c(width)}" height="${c(height)}" role="img" aria-label="${esc(label)}">` +
    `<title>${esc(label)}</title>${parts.join('')}</svg>`
  );
}

// ---------------------------------------------------------------------------------------------------
// Sections

function row(cells: readonly string[], header = false): string {
  const tag = header ? 'th' : 'td';
  return `<tr>${cells.map((cell, i) => (i === 0 && !header ? `<th scope="row">${cell}</th>` : `<${tag}>${cell}</${tag}>`)).join('')}</tr>`;
}

function keyValueTable(entries: ReadonlyArray<readonly [string, string]>, cls = 'kv'): string {
  return `<table class="${cls}"><tbody>${entries.map(([k, v]) => `<tr><th scope="row">${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</tbody></table>`;
}

function header(report: Report): string {
  const adopt = report.decision.adopt;
  const reason = report.decision.reason;
  const description = (reasonText as Readonly<Record<string, string>>)[reason];
  const minDelta = minDeltaOf(report);
  const facts: Array<readonly [string, string]> = [
    ['n', fmtInt(report.n)],
    ['seed', String(report.seed)],
    ['CI method', report.ci_method],
    ['alpha', fmtNum(report.statistics.alpha)],
    ['min_delta', minDelta === undefined ? '—' : fmtPp(minDelta)],
    ['dispatcher', report.dispatcher],
    ['started', report.started_at],
    ['finished', report.finished_at],
    ['duration', fmtSeconds(report.duration_seconds)],
    ['metaguard', report.metaguard_version],
  ];
  return (
    `<header><h1>metaguard <span class="task">${esc(report.task)}</span></h1>` +
    `<div class="verdict ${adopt ? 'adopt' : 'reject'}"><span class="badge">${adopt ? 'ADOPT' : 'REJECT'}</span>` +
    `<span class="reason"><code>${esc(reason)}</code>${description === undefined ? '' : ` — ${esc(description)}`}</span></div>` +
    `<dl class="facts">${facts.map(([k, v]) => `<div><dt>${esc(k)}</dt><dd>${esc(v)}</dd></div>`).join('')}</dl></header>`
  );
}

function summaryTable(report: Report): string {
  const b = report.baseline;
  const k = report.candidate;
  const rows: string[] = [
    row(['', 'baseline', 'candidate'], true),
    row(['passes', fmtInt(b.passes), fmtInt(k.passes)]),
    row(['total', fmtInt(b.total), fmtInt(k.total)]),
    row(['pass rate', fmtPct(b.pass_rate), fmtPct(k.pass_rate)]),
    row(['property violations (cases)', fmtInt(b.prop_violations), fmtInt(k.prop_violations)]),
    row(['relation violations (cases)', fmtInt(b.mr_violations), fmtInt(k.mr_violations)]),
    row(['soft violations (cases)', fmtInt(b.soft_violations), fmtInt(k.soft_violations)]),
    row(['errors (cases)', fmtInt(errorTotal(b)), fmtInt(errorTotal(k))]),
    ...errorCodes(report).map((code) =>
      row([`<span class="indent">${esc(code)}</span>`, fmtInt(errorCount(b, code)), fmtInt(errorCount(k, code))]),
    ),
    row(['duration mean', fmtMs(b.duration_ms.mean), fmtMs(k.duration_ms.mean)]),
    row(['duration p50', fmtMs(b.duration_ms.p50), fmtMs(k.duration_ms.p50)]),
    row(['duration p95', fmtMs(b.duration_ms.p95), fmtMs(k.duration_ms.p95)]),
    row(['duration max', fmtMs(b.duration_ms.max), fmtMs(k.duration_ms.max)]),
    ...httpRows(b, k),
  ];
  return (
    `<section><h2>Summary</h2><table class="summary"><tbody>${rows.join('')}</tbody></table>` +
    `<p class="note">Pass-rate delta (candidate − baseline): <strong>${esc(fmtPp(report.delta_pass_rate))}</strong>, ` +
    `${esc(report.ci_method)} interval [${esc(fmtPp(report.delta_ci[0]))}, ${esc(fmtPp(report.delta_ci[1]))}].</p></section>`
  );
}

/** Endpoint roles: requests, retries, statuses and latency percentiles ("—" for a module role). */
function httpRows(b: RoleSummary, k: RoleSummary): string[] {
  if (!b.http && !k.http) return [];
  const cell = (s: RoleSummary, f: (h: NonNullable<RoleSummary['http']>) => string) => (s.http ? f(s.http) : '—');
  const statuses = (h: NonNullable<RoleSummary['http']>) =>
    esc(Object.entries(h.statuses).sort(([a], [c]) => a.localeCompare(c)).map(([code, n]) => `${code}: ${fmtInt(n)}`).join(', ') || '—');
  return [
    row(['http requests', cell(b, (h) => fmtInt(h.requests)), cell(k, (h) => fmtInt(h.requests))]),
    row(['http retries', cell(b, (h) => fmtInt(h.retries)), cell(k, (h) => fmtInt(h.retries))]),
    row(['http statuses', cell(b, statuses), cell(k, statuses)]),
    row(['latency p50', cell(b, (h) => fmtMs(h.latency_ms.p50)), cell(k, (h) => fmtMs(h.latency_ms.p50))]),
    row(['latency p95', cell(b, (h) => fmtMs(h.latency_ms.p95)), cell(k, (h) => fmtMs(h.latency_ms.p95))]),
    row(['latency p99', cell(b, (h) => fmtMs(h.latency_ms.p99)), cell(k, (h) => fmtMs(h.latency_ms.p99))]),
    row(['latency max', cell(b, (h) => fmtMs(h.latency_ms.max)), cell(k, (h) => fmtMs(h.latency_ms.max))]),
  ];
}

function chartsSection(report: Report): string {
  return (
    `<section><h2>Pass rates</h2><div class="charts">` +
    `<figure>${passRateChart(report)}<figcaption>Pass rate per role.</figcaption></figure>` +
    `<figure>${intervalChart(report)}<figcaption>Pass-rate delta (candidate − baseline) with its ${esc(report.ci_method)} ` +
    `confidence interval; dashed lines mark zero${minDeltaOf(report) === undefined ? '' : ' and min_delta'}.</figcaption></figure>` +
    `</div><h2>Outcomes</h2><figure>${outcomeChart(report)}<figcaption>Outcomes per role. Violation counts are cases with at ` +
    `least one violation of that kind; a case may appear in more than one category.</figcaption></figure></section>`
  );
}

function statisticsSection(report: Report): string {
  const s = report.statistics;
  const p = s.paired;
  const paired =
    `<table class="paired"><tbody>` +
    row(['', 'candidate pass', 'candidate fail'], true) +
    row(['baseline pass', fmtInt(p.both_pass), fmtInt(p.baseline_only)]) +
    row(['baseline fail', fmtInt(p.candidate_only), fmtInt(p.neither)]) +
    `</tbody></table>`;
  const entries: Array<readonly [string, string]> = [
    ['McNemar exact p', fmtP(s.mcnemar.exact_p)],
    ['McNemar mid p', fmtP(s.mcnemar.mid_p)],
    ['discordant pairs', fmtInt(s.mcnemar.discordant)],
    ['estimated power', fmtPct(s.power.estimated_power, 1)],
    ['target power', fmtPct(s.power.target_power, 1)],
    [
      'recommended n',
      s.power.recommended_n === null ? '— (observed effect does not exceed min_delta)' : fmtInt(s.power.recommended_n),
    ],
    ['alpha', fmtNum(s.alpha)],
  ];
  if (s.bootstrap_samples !== undefined) entries.push(['bootstrap samples', fmtInt(s.bootstrap_samples)]);
  return (
    `<section><h2>Statistics</h2><div class="side"><div><h3>Paired outcomes</h3>${paired}</div>` +
    `<div><h3>Tests and power</h3>${keyValueTable(entries)}</div></div></section>`
  );
}

function violationRow(v: Violation): string {
  const cell = (text: string | undefined): string => (text === undefined ? '<td class="muted">—</td>' : `<td><pre>${esc(text)}</pre></td>`);
  return (
    `<tr class="${esc(v.role)}"><td>${esc(v.role)}</td><td class="num">${esc(fmtInt(v.case_index))}</td>` +
    `<td><span class="kind ${esc(v.kind)}">${esc(v.kind)}</span></td><td><code>${esc(v.name)}</code></td>` +
    `${cell(v.input)}${cell(v.output)}${cell(v.message === undefined ? undefined : v.message + (v.status !== undefined ? `\nstatus ${v.status}` : '') + (v.body !== undefined ? `\nbody: ${v.body}` : ''))}</tr>`
  );
}

function violationsSection(report: Report): string {
  const shown = report.violations.length;
  const total = Math.max(report.violations_total, shown);
  if (shown === 0) {
    const note = total > 0 ? `${fmtInt(total)} violations were recorded but none were kept in the report.` : 'No violations.';
    return `<section><h2>Violations</h2><p class="note">${esc(note)}</p></section>`;
  }
  const caption = shown < total ? `Showing ${shown} of ${fmtInt(total)} violations.` : `${shown} violation${shown === 1 ? '' : 's'}.`;
  return (
    `<section><h2>Violations</h2><p class="note">${esc(caption)}</p><div class="scroll"><table class="violations">` +
    `<thead><tr><th>role</th><th>case</th><th>kind</th><th>name</th><th>input</th><th>output</th><th>message</th></tr></thead>` +
    `<tbody>${report.violations.map(violationRow).join('')}</tbody></table></div></section>`
  );
}

function configSection(report: Report): string {
  const entries = Object.entries(report.config).map(([k, v]) => [k, displayValue(v)] as const);
  const body = entries.length === 0 ? '<p class="note">No configuration recorded.</p>' : keyValueTable(entries, 'kv config');
  return `<section><h2>Configuration</h2>${body}</section>`;
}

function hashesSection(report: Report): string {
  return (
    `<section><h2>Hashes</h2>` +
    keyValueTable(
      [
        ['task', report.hashes.task],
        ['baseline', report.hashes.baseline],
        ['candidate', report.hashes.candidate],
      ],
      'kv hashes',
    ) +
    `</section>`
  );
}

const css = `
:root{color-scheme:light dark;--bg:#fff;--fg:#1d2330;--muted:#667085;--line:#d0d5dd;--soft:#f4f6f8}
@media (prefers-color-scheme:dark){:root{--bg:#14171c;--fg:#e4e7ec;--muted:#98a2b3;--line:#344054;--soft:#1d2229}}
*{box-sizing:border-box}
body{margin:0;padding:24px 32px 48px;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1180px;margin:0 auto}
h1{font-size:22px;margin:0 0 10px}h1 .task{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}h3{font-size:14px;margin:8px 0}
.verdict{display:flex;align-items:center;gap:12px;padding:10px 14px;border-radius:8px;border:1px solid var(--line);background:var(--soft)}
.verdict .badge{font-weight:700;letter-spacing:.06em;color:#fff;padding:4px 12px;border-radius:6px}
.verdict.adopt .badge{background:${colors.adopt}}.verdict.reject .badge{background:${colors.reject}}
.facts{display:flex;flex-wrap:wrap;gap:8px 22px;margin:12px 0 0}.facts div{display:flex;gap:6px}.facts dt{color:var(--muted)}.facts dd{margin:0;font-variant-numeric:tabular-nums}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{border:1px solid var(--line);padding:4px 10px;text-align:left;vertical-align:top}
thead th,tr:first-child>th:not([scope]){background:var(--soft)}
.summary td,.paired td,.num{text-align:right}.indent{padding-left:16px;font-weight:400;font-family:ui-monospace,Menlo,Consolas,monospace}
th[scope=row]{font-weight:500;background:var(--soft)}
.note,.muted,figcaption{color:var(--muted)}
.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:0}
svg.chart{max-width:100%;height:auto;display:block}
svg.chart text{fill:currentColor;font:12px system-ui,sans-serif}
svg.chart text.strong{font-weight:600}svg.chart text.colored{fill:${colors.minDelta}}svg.chart text.on-bar{fill:#fff}
svg.chart .grid{stroke:var(--line);stroke-width:1}svg.chart .axis{stroke:var(--muted);stroke-width:1}
svg.chart .zero{stroke:var(--muted);stroke-width:1.5;stroke-dasharray:4 3}svg.chart .empty{fill:var(--soft);stroke:var(--line)}
.side{display:flex;flex-wrap:wrap;gap:32px}
.scroll{overflow-x:auto}
.violations{width:100%;table-layout:fixed}
.violations th:nth-child(1){width:88px}.violations th:nth-child(2){width:60px}.violations th:nth-child(3){width:82px}.violations th:nth-child(4){width:150px}
.violations pre{margin:0;max-height:160px;overflow:auto;white-space:pre-wrap;word-break:break-all;font:12px/1.35 ui-monospace,Menlo,Consolas,monospace}
.violations code,.kv td{word-break:break-all}
.kind{display:inline-block;padding:0 6px;border-radius:4px;color:#fff;font-size:12px}
.kind.property{background:${colors.property}}.kind.relation{background:${colors.relation}}.kind.error{background:${colors.error}}
.kv td{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap}
`;

/** Renders the report as one self-contained HTML document. */
export function renderHtml(report: Report): string {
  const title = `metaguard ${report.decision.adopt ? 'ADOPT' : 'REJECT'} — ${report.task}`;
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${esc(title)}</title>`,
    `<style>${css}</style>`,
    '</head>',
    '<body><main>',
    header(report),
    summaryTable(report),
    chartsSection(report),
    statisticsSection(report),
    violationsSection(report),
    configSection(report),
    hashesSection(report),
    '</main></body>',
    '</html>',
    '',
  ].join('\n');
}
