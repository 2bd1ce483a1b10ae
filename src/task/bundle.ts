/**
 * One loader for user modules, the same locally and on workers: each task or implementation module
 * (`.ts .mts .cts .js .mjs .cjs`, in any folder — no package.json, a CommonJS package, an ESM package)
 * is bundled by esbuild, with the sibling files and npm packages it imports, into one ES module. The
 * bundle's sha256 is the module's identity: the local pool runs that file, the queue ships the same
 * bytes to workers, and the report's `hashes` name it. A local run and a queue run execute
 * byte-identical code.
 *
 * `import … from 'metaguard'` (or 'metamorphic-guard') stays an import in the bundle: the case thread
 * resolves it to the metaguard that runs it (src/task/self-resolve.ts), here and on every worker.
 * Node built-ins stay imports too; CommonJS code in the bundle gets a real `require` for them.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Message } from 'esbuild';
import { MetaguardError } from '../errors.js';
import { sha256 as sha256Of } from '../util/hash.js';

export const MODULE_EXTENSIONS = ['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'] as const;

export interface ModuleBundle {
  /** file URL of the bundle (`<cache>/bundles/<sha256>.mjs`). */
  url: string;
  sha256: string;
}

/** Resolved at run time by the thread that loads the bundle (the running metaguard, never a copy). */
const SELF = ['metaguard', 'metamorphic-guard'];

/** CommonJS inside an ES module bundle needs `require` for Node built-ins (esbuild's shim throws). */
const banner = "import { createRequire as __mgCreateRequire } from 'node:module';\nconst require = __mgCreateRequire(import.meta.url);";

function describe(m: Message, entry: string): string {
  const loc = m.location;
  if (!loc) return m.text;
  const file = join(dirname(entry), loc.file);
  return `${file === entry ? 'line' : file + ':'}${file === entry ? ' ' : ''}${loc.line}:${loc.column + 1}: ${m.text}`;
}

/**
 * Bundles the module at `path` into the bundle cache and returns the bundle. Fails with
 * MG_ERR_MODULE_LOAD (`failed to load: <file>:<line>:<col>: <what>`) when it does not build: a syntax
 * error, an import that does not resolve. `what` ("baseline", "task") starts the message.
 */
export async function bundleModule(path: string, what: string, cacheDir: string): Promise<ModuleBundle> {
  const ext = extname(path);
  if (!(MODULE_EXTENSIONS as readonly string[]).includes(ext)) {
    throw new MetaguardError('MG_ERR_MODULE_LOAD', `${what} ${path}: failed to load: ${JSON.stringify(ext || '(none)')} is not a module extension (${MODULE_EXTENSIONS.join(' ')})`);
  }
  let code: Uint8Array;
  try {
    const out = await build({
      entryPoints: [path],
      // Paths in the bundle's comments are relative to the module's folder: the same bytes from any cwd.
      absWorkingDir: dirname(path),
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'node',
      target: 'node22',
      banner: { js: banner },
      external: SELF,
      logLevel: 'silent',
      sourcemap: false,
      legalComments: 'none',
    });
    code = out.outputFiles[0].contents;
  } catch (err) {
    const errors = (err as { errors?: Message[] }).errors;
    const first = errors?.[0] ? describe(errors[0], path) : (err as Error).message.split('\n')[0];
    throw new MetaguardError('MG_ERR_MODULE_LOAD', `${what} ${path}: failed to load: ${first}`, { cause: err });
  }
  const sha256 = sha256Of(code);
  let file: string;
  try {
    file = store(join(cacheDir, 'bundles'), sha256, code);
  } catch (err) {
    // A read-only or foreign cache (a container, another user's HOME): a private temporary one.
    const code_ = (err as { code?: string }).code;
    if (code_ !== 'EACCES' && code_ !== 'EROFS' && code_ !== 'EPERM') throw err;
    file = store(join(tmpdir(), `metaguard-${process.getuid?.() ?? 'user'}`, 'bundles'), sha256, code);
  }
  return { url: pathToFileURL(file).href, sha256 };
}

/**
 * Writes a bundle under its hash (atomically: a concurrent run sees the whole file or none). A file
 * already there is kept only if its bytes still have that hash: one rewritten since (by an
 * implementation with file access, say) is replaced, and case threads refuse to load a bundle whose
 * bytes do not match its name (src/execution/thread-guard.ts).
 */
function store(dir: string, sha256: string, code: Uint8Array): string {
  const file = join(dir, `${sha256}.mjs`);
  if (!existsSync(file) || sha256Of(readFileSync(file)) !== sha256) {
    mkdirSync(dir, { recursive: true });
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, code, { mode: 0o640 });
    renameSync(tmp, file);
  }
  return file;
}
