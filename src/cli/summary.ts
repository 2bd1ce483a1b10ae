/** The short human summary `metaguard evaluate` prints without `--json`. */
import { relative } from 'node:path';
import type { Report } from '../reports/types.js';

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const signedPct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;

export function formatSummary(report: Report, paths: { reportPath: string; htmlPath?: string; junitPath?: string }): string {
  const { decision } = report;
  const rel = (p: string) => {
    const r = relative(process.cwd(), p);
    return r.startsWith('..') ? p : r;
  };
  const lines = [
    decision.reason === 'incomplete' ? `${report.task}: verdict WITHHELD (incomplete)` : `${report.task}: candidate ${decision.adopt ? 'ADOPTED' : 'REJECTED'} (${decision.reason})`,
    `  pass rate   baseline ${pct(report.baseline.pass_rate)} (${report.baseline.passes}/${report.baseline.total})  candidate ${pct(report.candidate.pass_rate)} (${report.candidate.passes}/${report.candidate.total})`,
    `  delta       ${signedPct(report.delta_pass_rate)}  ${Math.round((1 - report.statistics.alpha) * 100)}% CI [${signedPct(report.delta_ci[0])}, ${signedPct(report.delta_ci[1])}]  (${report.ci_method})`,
  ];
  const errs = Object.entries(report.candidate.errors);
  if (report.candidate.prop_violations || report.candidate.mr_violations || errs.length) {
    lines.push(
      `  candidate   ${report.candidate.prop_violations} property, ${report.candidate.mr_violations} relation violations` +
        (errs.length ? `; errors ${errs.map(([k, v]) => `${k}=${v}`).join(' ')}` : '') +
        (decision.counted_errors ? ` (${decision.counted_errors} counted toward --violation-cap ${report.config.violation_cap})` : ''),
    );
  }
  // Endpoint roles: request latency percentiles, requests and retries.
  let label = 'latency';
  for (const role of ['baseline', 'candidate'] as const) {
    const h = report[role].http;
    if (!h) continue;
    const ms = (x: number) => `${x.toFixed(x < 10 ? 1 : 0)} ms`;
    lines.push(`  ${label.padEnd(11)} ${role.padEnd(9)} p50 ${ms(h.latency_ms.p50)}  p95 ${ms(h.latency_ms.p95)}  p99 ${ms(h.latency_ms.p99)}  (${h.requests} requests, ${h.retries} retries)`);
    label = '';
  }
  if (report.incomplete) {
    lines.push(`  incomplete  ${report.incomplete.undelivered_cases} cases not delivered: ${report.incomplete.reason}${report.incomplete.decided_on_delivered ? ' (decided on the delivered cases: --allow-incomplete)' : ''}`);
  }
  lines.push(`  report      ${rel(paths.reportPath)}`);
  if (paths.htmlPath) lines.push(`  html        ${rel(paths.htmlPath)}`);
  if (paths.junitPath) lines.push(`  junit       ${rel(paths.junitPath)}`);
  return lines.join('\n');
}
