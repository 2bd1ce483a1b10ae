/**
 * Imported first by a case thread, before any user module: takes away the process-wide levers a case
 * could pull from inside a thread.
 *
 * - `process.kill` (and its binding) would let a case end the whole daemon with
 *   `process.kill(process.pid, 'SIGKILL')`; it throws E_PERMISSION instead.
 * - `node:inspector` in a worker thread can `connectToMainThread()` and evaluate code in the daemon's
 *   main thread (its environment, its broker connections): importing or requiring it fails, and
 *   `process.getBuiltinModule`, `process.binding` and `process._linkedBinding` refuse it too.
 * - In a case thread, what a chunk request passes through on its way in is frozen: the
 *   `node:worker_threads` exports (piscina reads each task with `receiveMessageOnPort`, looked up
 *   there), and the prototypes of MessagePort, Node's event target and EventTarget. Otherwise a case
 *   could read each chunk's token and post that chunk's results itself. (A case process guards its
 *   IPC channel in src/case-runner/realm-lock.ts.)
 * - Module bundles are verified as they load (`verifiedBundleSource`): a bundle's file name is the
 *   sha256 of its bytes, and a bundle whose bytes no longer match (rewritten on disk by an
 *   implementation with file access, say) fails to load instead of running.
 *
 * This is damage control, not a sandbox: a thread shares the process's memory, file descriptors and
 * file system rights. `--isolation process` is the mode for code you do not trust.
 */
import module from 'node:module';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as workerThreads from 'node:worker_threads';
import { sha256 as sha256Of } from '../util/hash.js';

const denied = new Set(['inspector', 'inspector/promises']);
const bare = (name: string) => (name.startsWith('node:') ? name.slice(5) : name);

export function permissionError(what: string): Error {
  const err = new Error(`${what} is not allowed in a case thread`);
  (err as Error & { code: string }).code = 'E_PERMISSION';
  return err;
}

function replace(name: string, value: unknown): void {
  Object.defineProperty(process, name, { value, writable: false, configurable: false, enumerable: false });
}

let installed = false;

/**
 * A module bundle as a file URL: `<cache>/bundles/<sha256>.mjs` (src/task/bundle.ts) or a worker's
 * `<cache>/artifacts/<sha256>.mjs` (src/queue/artifacts.ts).
 */
const BUNDLE_URL = /^file:\/\/.*\/(?:bundles|artifacts)\/([0-9a-f]{64})\.mjs(?:\?.*)?$/;

/**
 * The source of a module bundle, read once and checked against the sha256 its name carries, or
 * undefined for a URL that is not a bundle. A bundle whose bytes do not match fails to load
 * (MG_ERR_MODULE_LOAD, naming the file).
 */
export function verifiedBundleSource(url: string): Buffer | undefined {
  const m = BUNDLE_URL.exec(url);
  if (!m) return undefined;
  const file = fileURLToPath(url.split('?')[0]);
  const source = readFileSync(file);
  const sha256 = sha256Of(source);
  if (sha256 !== m[1]) {
    const err = new Error(`module bundle ${file} was modified after it was written (its sha256 is ${sha256})`);
    (err as Error & { code: string }).code = 'MG_ERR_MODULE_LOAD';
    throw err;
  }
  return source;
}

export function guardThread(): void {
  if (installed) return;
  installed = true;
  const refuse = (what: string) => () => {
    throw permissionError(what);
  };
  replace('kill', refuse('process.kill'));
  replace('_kill', refuse('process._kill'));
  replace('binding', refuse('process.binding'));
  replace('_linkedBinding', refuse('process._linkedBinding'));
  const getBuiltin = process.getBuiltinModule?.bind(process);
  if (getBuiltin) {
    replace('getBuiltinModule', (id: string) => {
      if (denied.has(bare(String(id)))) throw permissionError(`node:${bare(String(id))}`);
      return getBuiltin(id);
    });
  }
  // Synchronous hooks cover import and require alike (Node >= 22.15 / 23.5).
  type Next = (s: string, c: unknown) => unknown;
  const registerHooks = (module as unknown as { registerHooks?: (hooks: { resolve: (s: string, c: unknown, next: Next) => unknown; load: (u: string, c: unknown, next: Next) => unknown }) => void }).registerHooks;
  if (!workerThreads.isMainThread) {
    const requireHere = module.createRequire(import.meta.url);
    Object.freeze(requireHere('node:worker_threads'));
    Object.freeze(EventTarget.prototype);
    Object.freeze(Object.getPrototypeOf(workerThreads.MessagePort.prototype));
    Object.freeze(workerThreads.MessagePort.prototype);
  }
  registerHooks?.({
    resolve(specifier, context, next) {
      if (denied.has(bare(specifier))) throw permissionError(`node:${bare(specifier)}`);
      return next(specifier, context);
    },
    load(url, context, next) {
      const source = verifiedBundleSource(url);
      return source === undefined ? next(url, context) : { format: 'module', source, shortCircuit: true };
    },
  });
}
