import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../util/paths.js';

/** Built-in tasks: `--task <name>` with example baseline and candidate files under `examples/`. */
export interface BuiltinTask {
  name: string;
  task: string;
  baseline: string;
  candidate: string;
  /** What `metaguard demo` expects the verdict to be. */
  expectAdopt: boolean;
}

const table: Record<string, { ext: string; expectAdopt: boolean }> = {
  top_k: { ext: 'mjs', expectAdopt: true },
  median: { ext: 'ts', expectAdopt: false },
  sum: { ext: 'mjs', expectAdopt: false },
};

export const builtinTaskNames = Object.keys(table);

export function builtinTask(name: string): BuiltinTask | undefined {
  const entry = table[name];
  if (!entry) return undefined;
  const dir = join(packageRoot(), 'examples', name);
  const file = (base: string) => join(dir, `${base}.${entry.ext}`);
  return { name, task: file('task'), baseline: file('baseline'), candidate: file('candidate'), expectAdopt: entry.expectAdopt };
}

export function builtinTaskUrl(name: string): string | undefined {
  const t = builtinTask(name);
  return t ? pathToFileURL(t.task).href : undefined;
}
