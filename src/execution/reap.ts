/**
 * Child processes that user code started from a case thread. Threads share the process, so their
 * children are the process's children. A pool finds what one of its threads started two ways:
 *
 * - Linux keeps, for each thread, the processes it started (/proc/<pid>/task/<tid>/children). The
 *   pool learns each thread's kernel id from the thread itself (before any user module loads, through
 *   a shared slot only the pool's own requests carry), with the thread's start time, so that an id
 *   the kernel gives to a later thread is never taken for it.
 * - Each thread's environment carries a mark, `MG_CASE_THREAD=<pool>.<tid>`, which the
 *   processes it starts inherit. It finds what left the tree: the children of a thread that died
 *   (Linux hands them to the main thread), and a shell's background job (`sh -c 'sleep 60 &'`,
 *   handed to init, holding the pipe an `execSync` waits on).
 *
 * When the pool ends a thread (a case limit, a stop), a thread dies, or the pool closes, what that
 * thread (or every thread of the pool) started is stopped (SIGSTOP, so none forks past the walk),
 * with its descendants, then killed (SIGKILL):
 *
 * - a thread blocked in `execSync('sleep 60')` cannot be terminated until the child exits (V8's
 *   termination waits for JavaScript to run again): a case limit, `--deadline-s` or a stop signal
 *   would wait for the child;
 * - a process started with `spawn` would outlive the case that started it, and the daemon runs for
 *   months.
 *
 * What was killed and is a child of this process is then collected (waitpid, in the native addon:
 * Node cannot wait for a process it did not start), or it would stay a zombie of the daemon; without
 * the addon it does. Out of reach: a process that changed its environment and left the tree (user
 * code can do both), and processes of another user. Elsewhere than Linux there is no /proc: nothing
 * is found, nothing is killed.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { reapExited } from '../codec/native.js';

/** The environment variable that marks what a case thread starts: `<pool>.<kernel thread id>`. */
export const THREAD_MARK = 'MG_CASE_THREAD';

/** The calling thread's kernel id (Linux), or 0 where /proc/thread-self does not exist. */
export function osThreadId(): number {
  try {
    const m = /\/task\/(\d+)$/.exec(readlinkSync('/proc/thread-self'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** When thread `tid` of this process started (clock ticks since boot), or '' if there is no such thread. */
export function threadStart(tid: number): string {
  try {
    const stat = readFileSync(`/proc/${process.pid}/task/${tid}/stat`, 'latin1');
    // Field 22; the fields after the command name (which may hold spaces) start at field 3.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

function readChildren(file: string): number[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const word of text.split(' ')) {
    const pid = Number(word);
    if (word.trim() !== '' && Number.isSafeInteger(pid) && pid > 0) out.push(pid);
  }
  return out;
}

/** The children of every thread of process `pid`. */
function childrenOfProcess(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  return tasks.flatMap((tid) => readChildren(`/proc/${pid}/task/${tid}/children`));
}

/**
 * Processes (of this user: others' environments cannot be read) whose environment holds
 * `THREAD_MARK=<mark>` exactly, or, with `prefix`, a value that begins with `mark`.
 */
export function markedProcesses(mark: string, prefix = false): number[] {
  const needle = Buffer.from(`${THREAD_MARK}=${mark}`, 'latin1');
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const name of entries) {
    const pid = Number(name);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) continue;
    let env: Buffer;
    try {
      env = readFileSync(`/proc/${pid}/environ`);
    } catch {
      continue;
    }
    for (let at = env.indexOf(needle); at >= 0; at = env.indexOf(needle, at + 1)) {
      const end = at + needle.length;
      if ((at === 0 || env[at - 1] === 0) && (prefix || end === env.length || env[end] === 0)) {
        out.push(pid);
        break;
      }
    }
  }
  return out;
}

/** Waits between the tries to collect killed children: ~6 s in all, for the slowest to die and for exiting threads to hand theirs over. */
const COLLECT_DELAYS_MS = [10, 40, 100, 200, 400, 800, 1600, 3200];

/**
 * Collects the exit status of those of `pids` that are this process's children once they have died,
 * so none stays a zombie (with the addon: Node has no waitpid of its own). Never blocks; the tries
 * keep no process alive.
 */
function collect(pids: number[], attempt = 0): void {
  const left = pids.filter((pid) => reapExited(pid) === 0);
  if (left.length === 0 || attempt >= COLLECT_DELAYS_MS.length) return;
  setTimeout(() => collect(left, attempt + 1), COLLECT_DELAYS_MS[attempt]).unref();
}

/** Stops `roots` and every descendant, then kills them all. Returns how many were signalled. */
function reap(roots: number[]): number {
  const found = new Set<number>();
  const stack = [...roots];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    if (found.has(pid) || pid === process.pid) continue;
    found.add(pid);
    try {
      process.kill(pid, 'SIGSTOP');
    } catch {
      // Gone already.
    }
    stack.push(...childrenOfProcess(pid));
  }
  for (const pid of found) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  // Not yet dead, most of them: the first try is a moment later.
  setTimeout(() => collect([...found]), 0).unref();
  return found.size;
}

/**
 * Kills what the threads `tids` of this process started (their /proc children) and what carries one
 * of the `marks` (exact) or `prefixes`, with their descendants. Never the main thread's children
 * (case processes, the bundler). Returns how many processes were signalled.
 */
export function killStarted(what: { tids?: Iterable<number>; marks?: string[]; prefixes?: string[] }): number {
  const roots: number[] = [];
  for (const tid of what.tids ?? []) {
    if (Number.isSafeInteger(tid) && tid > 0 && tid !== process.pid) roots.push(...readChildren(`/proc/${process.pid}/task/${tid}/children`));
  }
  for (const mark of what.marks ?? []) roots.push(...markedProcesses(mark));
  for (const mark of what.prefixes ?? []) roots.push(...markedProcesses(mark, true));
  return roots.length ? reap(roots) : 0;
}
