/**
 * Imported first by a case thread, before any user module: takes away the process-wide levers a case
 * could pull from inside a thread.
 *
 * - `process.kill` (and its binding) would let a case end the whole daemon with
 *   `process.kill(process.pid, 'SIGKILL')`; it throws E_PERMISSION instead.
 * - `node:inspector` in a worker thread can `connectToMainThread()` and evaluate code in the daemon's
 *   main thread (its environment, its broker connections): importing or requiring it fails, and
 *   `process.getBuiltinModule`, `process.binding` and `process._linkedBinding` refuse it too.
 *
 * - The realm is locked before user code loads (`lockRealm`): the JavaScript intrinsics are frozen by
 *   Node's `--frozen-intrinsics` (given to every case thread and case process), and this adds what
 *   that flag leaves open: the global bindings (`globalThis.Array = …`), `Atomics`, the prototypes a
 *   message passes through on its way in (EventTarget, Node's event target, MessagePort), and
 *   `process.emit` (a case process's IPC messages). A candidate shares its realm with the checks that
 *   judge it and with the runner that reports their results; without this it could answer for them
 *   (a getter on Object.prototype, `Array.prototype.every`, reading a chunk's token off the wire).
 * - Module bundles are verified as they load (`verifiedBundleSource`): a bundle's file name is the
 *   sha256 of its bytes, and a bundle whose bytes no longer match (rewritten on disk by an
 *   implementation with file access, say) fails to load instead of running.
 *
 * This is damage control, not a sandbox: a thread shares the process's memory, file descriptors and
 * file system rights. `--isolation process` is the mode for code you do not trust.
 */
import module from 'node:module';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { MessagePort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

const requireHere = module.createRequire(import.meta.url);

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

/** Node flags every case thread and case process starts with (see `lockRealm`). */
export const CASE_REALM_FLAGS = ['--frozen-intrinsics', '--disable-warning=ExperimentalWarning'] as const;

/**
 * Locks what `--frozen-intrinsics` leaves writable and the runner relies on (see the module comment).
 * Without that flag (a realm this module did not start) the intrinsics stay as they are.
 */
function lockRealm(refuse: (what: string) => () => never): void {
  const { defineProperty, freeze, getOwnPropertyDescriptor, getPrototypeOf } = Object;
  for (const key of Reflect.ownKeys(globalThis)) {
    const d = getOwnPropertyDescriptor(globalThis, key)!;
    // Data properties only: Node defines some web globals as lazy accessors that replace themselves
    // with a value on first use, which a non-configurable accessor would break.
    if ('value' in d && d.configurable) defineProperty(globalThis, key, { value: d.value, writable: false, enumerable: d.enumerable, configurable: false });
  }
  freeze(Atomics);
  // Builtin modules a task's checks are likely to use (`assert.deepStrictEqual`, `util.isDeepStrictEqual`),
  // frozen; and no re-syncing of builtin ESM exports, so that a named import of any builtin keeps the
  // function it had when it was imported.
  for (const id of ['node:assert', 'node:assert/strict', 'node:util', 'node:util/types']) freeze(requireHere(id));
  const syncBuiltins = module.syncBuiltinESMExports;
  defineProperty(module, 'syncBuiltinESMExports', { value: refuse('module.syncBuiltinESMExports'), writable: false, enumerable: true, configurable: false });
  syncBuiltins();
  freeze(EventTarget.prototype);
  freeze(getPrototypeOf(MessagePort.prototype));
  freeze(MessagePort.prototype);
  defineProperty(process, 'emit', { value: EventEmitter.prototype.emit, writable: false, enumerable: false, configurable: false });
}

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
  const sha256 = createHash('sha256').update(source).digest('hex');
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
  if (Object.isFrozen(Array.prototype)) lockRealm(refuse);
}
