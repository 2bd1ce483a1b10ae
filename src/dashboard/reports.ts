/**
 * The Reports view: JSON reports in `--report-dir` (the files `evaluate` writes), newest first, each
 * parsed once per (size, mtime). A report opens as HTML rendered from its JSON by the same renderer
 * as `--html-report`. Only names that look like report files are listed or served: a request can
 * never name another path.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Report } from '../reports/types.js';
import type { ReportRow } from './views.js';

export const REPORT_NAME = /^report_[A-Za-z0-9_-]{1,64}_\d{8}T\d{6}Z_[0-9a-f]{8}\.json$/;
const MAX_LISTED = 200;
const MAX_BYTES = 64 * 1024 * 1024;


const cache = new Map<string, { key: string; row: ReportRow }>();

function summarize(file: string, raw: string, mtime: Date): ReportRow {
  const row: ReportRow = { file, task: null, verdict: null, reason: null, n: null, deltaPassRate: null, date: mtime.toISOString() };
  try {
    const r = JSON.parse(raw) as Partial<Report>;
    if (typeof r.task === 'string') row.task = r.task.slice(0, 200);
    if (typeof r.decision?.adopt === 'boolean') row.verdict = r.decision.adopt ? 'adopt' : 'reject';
    if (typeof r.decision?.reason === 'string') row.reason = r.decision.reason.slice(0, 200);
    if (typeof r.n === 'number' && Number.isFinite(r.n)) row.n = r.n;
    if (typeof r.delta_pass_rate === 'number' && Number.isFinite(r.delta_pass_rate)) row.deltaPassRate = r.delta_pass_rate;
    if (typeof r.finished_at === 'string' && !Number.isNaN(Date.parse(r.finished_at))) row.date = new Date(r.finished_at).toISOString();
  } catch {
    // listed as unreadable (verdict null)
  }
  return row;
}

export function listReports(dir: string): ReportRow[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => REPORT_NAME.test(n));
  } catch {
    return [];
  }
  const rows: ReportRow[] = [];
  for (const name of names) {
    const path = join(dir, name);
    try {
      const st = statSync(path);
      if (!st.isFile() || st.size > MAX_BYTES) continue;
      const key = `${st.size}:${st.mtimeMs}`;
      const hit = cache.get(path);
      if (hit && hit.key === key) {
        rows.push(hit.row);
        continue;
      }
      const row = summarize(name, readFileSync(path, 'utf8'), st.mtime);
      cache.set(path, { key, row });
      rows.push(row);
    } catch {
      // removed meanwhile
    }
  }
  if (cache.size > 4 * MAX_LISTED) cache.clear();
  return rows.sort((a, b) => b.date.localeCompare(a.date)).slice(0, MAX_LISTED);
}

/** The parsed report of a listed file name, or undefined when the name or the file is not a report. */
export function readReport(dir: string, file: string): Report | undefined {
  if (!REPORT_NAME.test(file)) return undefined;
  try {
    const path = join(dir, file);
    if (statSync(path).size > MAX_BYTES) return undefined;
    const r = JSON.parse(readFileSync(path, 'utf8')) as Report;
    return r !== null && typeof r === 'object' && typeof r.decision === 'object' && r.decision !== null ? r : undefined;
  } catch {
    return undefined;
  }
}
