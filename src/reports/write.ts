/** Writing reports: collision-free names and strictly valid JSON. */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Report } from './types.js';

/** `20261123T183351Z` */
export function utcStamp(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

export function reportFileName(task: string, date: Date, id: string): string {
  const safe = task.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 64) || 'task';
  return `report_${safe}_${utcStamp(date)}_${id}.json`;
}

/**
 * Serializes a report as strict JSON. Non-finite numbers would be written as `null` by JSON.stringify
 * without a word; a report must never contain one, so this throws instead of hiding a bug.
 */
export function reportJson(report: Report): string {
  return JSON.stringify(
    report,
    (key, value) => {
      if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`report key ${key} is not a finite number: ${value}`);
      return value;
    },
    2,
  );
}

/** Writes `reports/report_<task>_<UTC>_<id>.json`; `wx` makes a name collision retry, never overwrite. */
export function writeJsonReport(report: Report, dir: string, now = new Date()): string {
  mkdirSync(dir, { recursive: true });
  const text = reportJson(report) + '\n';
  for (;;) {
    const path = resolve(join(dir, reportFileName(report.task, now, randomBytes(4).toString('hex'))));
    try {
      writeFileSync(path, text, { flag: 'wx' });
      return path;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

export function writeTextFile(path: string, text: string): string {
  const abs = resolve(path);
  mkdirSync(dirname(abs), { recursive: true });
  writeFileSync(abs, text);
  return abs;
}
