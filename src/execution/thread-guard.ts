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
 * This is damage control, not a sandbox: a thread shares the process's memory, file descriptors and
 * file system rights. `--isolation process` is the mode for code you do not trust.
 */
import module from 'node:module';

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
  const registerHooks = (module as unknown as { registerHooks?: (hooks: { resolve: (s: string, c: unknown, next: (s: string, c: unknown) => unknown) => unknown }) => void }).registerHooks;
  registerHooks?.({
    resolve(specifier, context, next) {
      if (denied.has(bare(specifier))) throw permissionError(`node:${bare(specifier)}`);
      return next(specifier, context);
    },
  });
}
