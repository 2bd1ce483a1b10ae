import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The package's root folder, from source (`src/…`) or from the build (`dist/src/…`). */
export function packageRoot(): string {
  if (root !== undefined) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('metaguard: cannot find package.json above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  root = dir;
  return dir;
}

/** True when this module runs from TypeScript source (through tsx) rather than from `dist/`. */
export const runningFromSource = import.meta.url.endsWith('.ts');

/** metaguard's cache folder in `env` (bundles, a worker's artifacts): METAGUARD_CACHE_DIR, systemd's CACHE_DIRECTORY, or XDG's. */
export function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  // systemd's CacheDirectory= sets CACHE_DIRECTORY.
  return env.METAGUARD_CACHE_DIR || env.CACHE_DIRECTORY || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'metaguard');
}
