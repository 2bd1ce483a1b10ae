/**
 * `--isolation process`: cases run in child processes instead of threads, one chunk at a time per
 * process, each process started as
 *
 *   prlimit --as=<mem-mb + 2 GiB> --cpu=<2 × retire> --nofile=256 --core=0 --
 *     node --permission --allow-fs-read=<package>,<artifacts> --max-old-space-size=<mem-mb>
 *          --disable-wasm-trap-handler case-runner/case-process.js <retire>
 *
 * with the scrubbed environment (env.ts) and no inherited descriptor but stdio and the IPC channel.
 * The permission model refuses file writes, reads outside the package and the artifacts, child
 * processes, worker threads, native addons and the inspector; `prlimit` bounds the address space
 * (off-heap Buffers included: V8 itself needs ~1.5 GiB of reservations, hence the headroom), CPU time
 * and open files, and disables core files. It does not restrict the network.
 *
 * `--disable-wasm-trap-handler`: by default V8 backs every WebAssembly memory with a ~10 GiB virtual
 * reservation (guard regions instead of bounds checks). Under the address-space limit that reservation
 * fails: on Node 22 (V8 12.4) every Wasm instantiation then throws "Out of memory: Cannot allocate
 * Wasm memory" — undici's HTTP parser, which the case runner loads, is Wasm, so every case process
 * died at start — and on Node 24 the fallback is unreliable (a fatal OOM at some limits). With the
 * flag Wasm code does explicit bounds checks and a memory reserves only what it uses.
 *
 * A case that kills its process, aborts, or exhausts the address space or the heap ends as E_CRASH /
 * E_OOM; the process is replaced and the pool goes on. Limits and blame work as in the thread pool:
 * each result is sent as its case ends, so the first case without a result is the one running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MetaguardError, type ErrorInfo } from '../errors.js';
import { packageRoot, runningFromSource } from '../util/paths.js';
import { boundResult } from './limits.js';
import { caseEnvironment } from './env.js';
import { publishing, type ChunkEvents } from './events.js';
import { runAttempts, timeoutSlackMs, type AttemptOutcome, type CaseRunner, type ChunkSpec, type ImplementationDescription } from './pool.js';
import type { ThreadMessage } from './protocol.js';
import type { CaseInput, CaseResult } from '../core/protocol.js';

export interface ProcessPoolOptions {
  threads: number;
  timeoutMs: number;
  memMb: number;
  /** Folders the cases may read besides the package (the artifact cache, or the modules' folders). */
  readPaths: string[];
  env?: Record<string, string>;
  /** First slot number of this pool's processes. @defaultValue 0 */
  slotBase?: number;
  /** CPU seconds after which a process retires between chunks (its RLIMIT_CPU is twice this). @defaultValue 300 */
  cpuRetireS?: number;
}

/**
 * Always the compiled entry: tsx cannot run under the permission model (it probes the file system's
 * case sensitivity outside the allowed folders). TypeScript user modules load through Node's own type
 * stripping.
 */
const entry = runningFromSource ? join(packageRoot(), 'dist', 'src', 'case-runner', 'case-process.js') : fileURLToPath(new URL('../case-runner/case-process.js', import.meta.url));
const stripTypes = Number(process.versions.node.split('.')[0]) < 23 && process.allowedNodeEnvironmentFlags.has('--experimental-strip-types') ? ['--experimental-strip-types'] : [];
/** Virtual address space V8 and Node reserve before any user allocation (measured: Node 24 does not start under 1.25 GiB). */
export const ADDRESS_SPACE_HEADROOM_MB = 2048;
const importBudgetMs = (timeoutMs: number) => Math.max(10_000, timeoutMs * 2);

/** Node >= 22.2 and >= 20.15 accept it (see the header). */
const wasmFlags = process.allowedNodeEnvironmentFlags.has('--disable-wasm-trap-handler') ? ['--disable-wasm-trap-handler'] : [];

/** The permission flag this Node accepts (stable `--permission` from 22.13 / 23.5). */
function permissionFlag(): string {
  return process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';
}

let prlimitPath: string | null | undefined;
export function findPrlimit(): string | null {
  if (prlimitPath !== undefined) return prlimitPath;
  prlimitPath = ['/usr/bin/prlimit', '/bin/prlimit', '/usr/local/bin/prlimit'].find((p) => existsSync(p)) ?? null;
  return prlimitPath;
}

interface Slot {
  child: ChildProcess;
  ready: Promise<void>;
  busy: boolean;
  /** Last few KB of the child's stderr, to classify its death. */
  stderr: string;
  listener?: (m: unknown) => void;
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  killedByUs: boolean;
  retiring: boolean;
  slot: number;
}

export class ProcessCasePool extends EventEmitter implements CaseRunner {
  /** Cases go to a case process as values (its IPC channel), never as payloads. */
  readonly takesPayloads = false;
  readonly threads: number;
  readonly timeoutMs: number;
  readonly memMb: number;
  readonly #options: ProcessPoolOptions;
  readonly #slots: (Slot | undefined)[];
  /** Chunks and requests waiting for a free case process; rejected when the pool is destroyed. */
  readonly #waiting: { resolve: (slot: Slot) => void; reject: (err: Error) => void }[] = [];
  #running = 0;
  #destroyed = false;
  #closed = false;
  lastUsed = Date.now();

  constructor(options: ProcessPoolOptions) {
    super();
    if (!existsSync(entry)) {
      throw new MetaguardError('MG_ERR_INVALID_OPTION', `isolation: process needs the compiled package (${entry} is missing: run npm run build)`, { field: 'isolation' });
    }
    if (!findPrlimit()) {
      throw new MetaguardError('MG_ERR_INVALID_OPTION', 'isolation: process needs the prlimit command (util-linux) to set OS limits', { field: 'isolation' });
    }
    this.threads = options.threads;
    this.timeoutMs = options.timeoutMs;
    this.memMb = options.memMb;
    this.#options = options;
    this.#slots = Array.from({ length: options.threads }, (_, i) => this.#spawn(i));
  }

  get needsDrain(): boolean {
    return this.#waiting.length > 0;
  }

  get utilization(): number {
    return this.#slots.filter((s) => s?.busy).length / this.threads;
  }

  get running(): number {
    return this.#running;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Case processes alive (each has one main JS thread; reported for the thread bound). */
  get threadCount(): number {
    return this.#slots.filter((s) => s && s.child.exitCode === null && s.child.signalCode === null).length;
  }

  #command(): { file: string; args: string[] } {
    const retire = this.#options.cpuRetireS ?? 300;
    // A folder and everything under it.
    const reads = [packageRoot(), ...this.#options.readPaths].flatMap((dir) => [`--allow-fs-read=${dir}`, `--allow-fs-read=${join(dir, '*')}`]);
    const node = [permissionFlag(), ...reads, `--max-old-space-size=${this.memMb}`, ...wasmFlags, ...stripTypes, '--disable-warning=ExperimentalWarning', entry,
      String(retire),
    ];
    const limits = [
      `--as=${(this.memMb + ADDRESS_SPACE_HEADROOM_MB) * 1024 * 1024}`,
      `--cpu=${retire * 2}`,
      '--nofile=256',
      '--core=0',
    ];
    return { file: findPrlimit()!, args: [...limits, '--', process.execPath, ...node] };
  }

  #spawn(index: number): Slot {
    const { file, args } = this.#command();
    const child = spawn(file, args, {
      // A pool built without one (tests, benches) starts from this process's scrubbed environment.
      env: this.#options.env ?? caseEnvironment(process.env),
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    const slot: Slot = { child, busy: false, stderr: '', killedByUs: false, retiring: false, slot: (this.#options.slotBase ?? 0) + index, ready: Promise.resolve(), closed: Promise.resolve({ code: null, signal: null }) };
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (slot.stderr = (slot.stderr + d).slice(-4096)));
    slot.closed = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
    slot.ready = new Promise<void>((resolve, reject) => {
      const onMessage = (m: unknown) => {
        if ((m as { t?: string })?.t === 'ready') {
          child.off('message', onMessage);
          resolve();
        }
      };
      child.on('message', onMessage);
      child.once('close', (code, signal) => reject(new Error(`case process exited before it was ready (${signal ? `signal ${signal}` : `exit code ${code}`}): ${deathReason(slot.stderr) || 'no output on stderr'}`)));
    });
    // Every chunk and question awaits `ready` and reports its failure; a process that dies before any
    // of them needed it is replaced by the 'close' handler below, so nobody else must see it here.
    slot.ready.catch(() => {});
    child.on('message', (m) => slot.listener?.(m));
    // A spawn or IPC failure: 'close' follows and reports the death; its message carries this line.
    child.on('error', (err) => (slot.stderr = `${slot.stderr}\n${err.message}`.slice(-4096)));
    child.once('close', () => {
      // Replace a process that ended (killed, crashed, retired) unless the pool is closing.
      if (!this.#closed && this.#slots[index] === slot) {
        this.#slots[index] = this.#spawn(index);
        if (!slot.busy) this.#handOut(this.#slots[index]!);
      }
    });
    return slot;
  }

  #handOut(slot: Slot): void {
    const next = this.#waiting.shift();
    if (next) {
      slot.busy = true;
      next.resolve(slot);
    } else if (this.#waiting.length === 0) this.emit('drain');
  }

  #acquire(): Promise<Slot> {
    if (this.#destroyed) return Promise.reject(poolClosed());
    const free = this.#slots.find((s) => s && !s.busy && s.child.exitCode === null && s.child.signalCode === null);
    if (free) {
      free.busy = true;
      return Promise.resolve(free);
    }
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  #release(slot: Slot): void {
    slot.busy = false;
    slot.listener = undefined;
    if (this.#slots.includes(slot) && slot.child.exitCode === null && slot.child.signalCode === null && !slot.retiring) this.#handOut(slot);
  }

  async runChunk(spec: ChunkSpec, chunkEvents: ChunkEvents = {}): Promise<CaseResult[]> {
    if (this.#closed) throw new MetaguardError('MG_ERR_POOL_CLOSED', 'the case pool is closed');
    const events = publishing(chunkEvents);
    this.#running++;
    try {
      return await runAttempts(spec.cases, events, this.timeoutMs, (cases) => this.#attempt(spec, cases, events), { closed: () => this.#closed, released: () => {} });
    } finally {
      this.#running--;
      this.lastUsed = Date.now();
    }
  }

  async #attempt(spec: ChunkSpec, cases: CaseInput[], events: ChunkEvents): Promise<AttemptOutcome> {
    const slot = await this.#acquire();
    const token = randomBytes(16).toString('base64url');
    const results: CaseResult[] = [];
    const awaited = new Set(cases.map((c) => c.index));
    let begun = false;
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const kill = () => {
      timedOut = true;
      slot.killedByUs = true;
      slot.child.kill('SIGKILL');
    };
    try {
      await slot.ready;
    } catch (err) {
      this.#release(slot);
      return { results, threadId: -1, slot: slot.slot, position: -1, fault: { code: 'E_CRASH', message: (err as Error).message, beforeBegin: true, reason: 'crash' } };
    }
    const outcome = await new Promise<AttemptOutcome>((resolve) => {
      const position = () => cases.findIndex((c) => awaited.has(c.index));
      timer = setTimeout(kill, importBudgetMs(this.timeoutMs));
      slot.listener = (raw: unknown) => {
        const m = raw as ThreadMessage | { t: 'done'; token: string; retire?: boolean };
        if (m?.token !== token) return;
        if (m.t === 'results' && Array.isArray(m.results)) {
          for (const x of m.results) {
            const r = boundResult(x);
            if (!r || !awaited.delete(r.index)) continue;
            results.push(r);
            events.onResult?.(r, slot.slot);
          }
          timer?.refresh();
        } else if (m.t === 'started') {
          // The import budget runs from here (armed at send).
        } else if (m.t === 'begin' && !begun) {
          begun = true;
          clearTimeout(timer);
          timer = setTimeout(kill, this.timeoutMs + timeoutSlackMs(this.timeoutMs));
        } else if (m.t === 'end') {
          if (typeof m.heapUsed === 'number' && Number.isFinite(m.heapUsed)) events.onHeap?.(m.heapUsed, slot.slot);
        } else if (m.t === 'done') {
          if (m.retire) slot.retiring = true;
          if (awaited.size === 0) resolve({ results, threadId: slot.child.pid ?? -1, slot: slot.slot, position: -1 });
          else resolve({ results, threadId: slot.child.pid ?? -1, slot: slot.slot, position: -1, fault: { code: 'E_CRASH', message: 'case process ended its chunk without a result for every case', beforeBegin: !begun, reason: 'crash', unfinished: true } });
        }
      };
      void slot.closed.then(({ code, signal }) => {
        // Results written before the death are read before 'close'.
        resolve({ results, threadId: slot.child.pid ?? -1, slot: slot.slot, position: position(), fault: this.#classify(slot, code, signal, timedOut, begun) });
      });
      slot.child.send({ t: 'run', req: { taskUrl: spec.taskUrl, implUrl: spec.implUrl, seed: spec.seed, timeoutMs: this.timeoutMs, cases, token, ...(spec.exec ? { exec: spec.exec } : {}) } }, (err) => {
        if (err) kill();
      });
    });
    clearTimeout(timer);
    this.#release(slot);
    return outcome;
  }

  #classify(slot: Slot, code: number | null, signal: NodeJS.Signals | null, timedOut: boolean, begun: boolean): NonNullable<AttemptOutcome['fault']> {
    if (timedOut) {
      return begun
        ? { code: 'E_TIMEOUT', message: `case exceeded its ${this.timeoutMs} ms limit`, beforeBegin: false, reason: 'timeout' }
        : { code: 'E_TIMEOUT', message: `module import exceeded ${importBudgetMs(this.timeoutMs)} ms`, beforeBegin: true, reason: 'timeout' };
    }
    const tail = slot.stderr;
    // What the process said as it died travels in the message (and so reaches the logs and the report).
    const said = deathReason(tail);
    const how = signal ? `signal ${signal}` : `exit code ${code}`;
    if (/out of memory|allocation failed|heap limit|Failed to reserve virtual memory/i.test(tail)) {
      return { code: 'E_OOM', message: `case exhausted its memory limit (${this.memMb} MiB heap, ${this.memMb + ADDRESS_SPACE_HEADROOM_MB} MiB address space; process ended with ${how}): ${said}`, beforeBegin: !begun, reason: 'oom' };
    }
    if (/ERR_ACCESS_DENIED/.test(tail)) {
      return { code: 'E_PERMISSION', message: `case process was refused an operation: ${said}`, beforeBegin: !begun, reason: 'crash' };
    }
    return { code: 'E_CRASH', message: `case process ended (${how})${said ? ': ' + said : ''}`, beforeBegin: !begun, reason: 'crash' };
  }

  async checkModules(taskUrl: string, implUrl: string): Promise<ErrorInfo | null> {
    return this.#ask<ErrorInfo | null>({ t: 'check', taskUrl, implUrl }, 'checked', (m) => (m as { info: ErrorInfo | null }).info, importBudgetMs(this.timeoutMs));
  }

  async describeImplementation(implUrl: string): Promise<ImplementationDescription> {
    return this.#ask<ImplementationDescription>({ t: 'describe', implUrl }, 'described', (m) => (m as { answer: ImplementationDescription }).answer, importBudgetMs(this.timeoutMs));
  }

  async heapAfterGc(): Promise<number> {
    return this.#ask<number>({ t: 'heap' }, 'heap', (m) => Number((m as { bytes: number }).bytes), 10_000);
  }

  async #ask<T>(request: object, answer: string, pick: (m: unknown) => T, budgetMs: number): Promise<T> {
    const slot = await this.#acquire();
    try {
      await slot.ready;
      return await new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          slot.killedByUs = true;
          slot.child.kill('SIGKILL');
          reject(Object.assign(new Error(`case process did not answer within ${budgetMs} ms`), { code: 'E_TIMEOUT' }));
        }, budgetMs);
        slot.listener = (m) => {
          if ((m as { t?: string })?.t !== answer) return;
          clearTimeout(timer);
          resolve(pick(m));
        };
        void slot.closed.then(({ code, signal }) => {
          clearTimeout(timer);
          reject(Object.assign(new Error(`case process ended (${signal ?? code}): ${deathReason(slot.stderr)}`), { code: 'E_CRASH' }));
        });
        slot.child.send(request);
      });
    } catch (err) {
      const e = err as { code?: string; message: string };
      return { code: e.code ?? 'E_CRASH', message: e.message } as T;
    } finally {
      this.#release(slot);
    }
  }

  async #stop(wait: boolean): Promise<void> {
    this.#closed = true;
    if (wait) while (this.#running > 0) await new Promise((r) => setTimeout(r, 10));
    // Whatever still waits for a case process would wait forever once they are killed (and a later
    // close() would wait for it): it fails instead.
    this.#destroyed = true;
    for (const w of this.#waiting.splice(0)) w.reject(poolClosed());
    const slots = this.#slots.filter((s): s is Slot => s !== undefined);
    for (const s of slots) {
      s.killedByUs = true;
      // An idle case process holds no state worth keeping: it is killed, not asked to leave.
      s.child.kill('SIGKILL');
    }
    await Promise.all(slots.map((s) => s.closed));
  }

  close(): Promise<void> {
    return this.#stop(true);
  }

  destroy(): Promise<void> {
    return this.#stop(false);
  }
}

const poolClosed = () => new MetaguardError('MG_ERR_POOL_CLOSED', 'the case pool is closed');

/**
 * The line of a dying process's stderr that says why: the last error or fatal-error line (Node ends
 * an uncaught error with its source excerpt, the stack and its version; V8 with native frames), else
 * the last line that is none of those.
 */
export function deathReason(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^at /.test(l) && !/^\^+$/.test(l) && !/^Node\.js v\d/.test(l) && !/^\d+: 0x[0-9a-f]+ /.test(l) && !/^-+ .* -+$/.test(l));
  const error = lines.findLast((l) => /^(FATAL ERROR|Fatal|#\s*Fatal)|^(\w+(Error|Exception)|Error)( \[\w+\])?: /.test(l));
  return (error ?? lines.at(-1) ?? '').slice(0, 300);
}
