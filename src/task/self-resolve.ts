/**
 * `import { defineTask } from 'metaguard'` works in a task file anywhere: when the bare specifier
 * `metaguard` (or `metamorphic-guard`) does not resolve from the importing file (the package is not
 * installed or linked there; a module bundle in the cache never has it), it resolves to this
 * package's user-module entry (src/user-api.ts: defineTask, the interval functions, the error
 * codes), not its full entry, which loads native addons a case process may not load. An installed
 * copy wins. Registered once per thread, before the first user module is imported.
 */
import * as nodeModule from 'node:module';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../util/paths.js';

const NAMES = ['metaguard', 'metamorphic-guard'];
let registered = false;

/** The URL `metaguard` resolves to when it is not installed: the build's user-module entry, else the source's. */
export function selfEntryUrl(): string {
  const dist = join(packageRoot(), 'dist', 'src', 'user-api.js');
  return pathToFileURL(existsSync(dist) ? dist : join(packageRoot(), 'src', 'user-api.ts')).href;
}

type ResolveResult = { url: string; shortCircuit?: boolean; format?: string | null };

export function registerSelfResolve(): void {
  if (registered) return;
  registered = true;
  const target = selfEntryUrl();
  const isSelf = (specifier: string) => NAMES.includes(specifier);
  const registerHooks = (nodeModule as unknown as { registerHooks?: (hooks: { resolve: (s: string, c: unknown, next: (s: string, c: unknown) => ResolveResult) => ResolveResult }) => void }).registerHooks;
  if (typeof registerHooks === 'function') {
    // Node >= 22.15: synchronous, in-thread hooks.
    registerHooks({
      resolve(specifier, context, next) {
        try {
          return next(specifier, context);
        } catch (err) {
          if (isSelf(specifier) && /MODULE_NOT_FOUND$/.test(String((err as { code?: string }).code))) return { url: target, shortCircuit: true };
          throw err;
        }
      },
    });
    return;
  }
  // Node 22.12-22.14: off-thread hooks from a data: module (no file to ship or find).
  const source = `const target = ${JSON.stringify(target)}; const names = ${JSON.stringify(NAMES)};
export async function resolve(specifier, context, next) {
  try { return await next(specifier, context); }
  catch (err) { if (names.includes(specifier) && err && /MODULE_NOT_FOUND$/.test(String(err.code))) return { url: target, shortCircuit: true }; throw err; }
}`;
  nodeModule.register(`data:text/javascript,${encodeURIComponent(source)}`);
}
