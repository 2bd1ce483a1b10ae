/**
 * Child processes that user code started from a case thread. Threads share the process, so their
 * children are the process's children; Linux keeps, for each thread, the list of the processes that
 * thread started (/proc/<pid>/task/<tid>/children). A pool learns each thread's kernel id from the
 * thread itself (before any user module loads, through a shared slot only the pool's own requests
 * carry) and, when it ends a thread or stops, kills what that thread started:
 *
 * - A thread blocked in `execSync('sleep 60')` cannot be terminated until the child exits (V8's
 *   termination waits for JavaScript to run again): a case limit, `--deadline-s` or a stop signal
 *   would wait for the child. Killing the child lets the thread end.
 * - A process started with `spawn` outlives the case that started it, and the daemon runs for months.
 *
 * Descendants are stopped (SIGSTOP) as they are found, so none forks past the walk, then killed
 * (SIGKILL). A process that left the tree (setsid and a double fork) is out of reach, and so are the
 * children of a thread that has already exited (Linux hands them to another thread of the process).
 * Elsewhere than Linux there is no /proc: nothing is found, nothing is killed.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/** The calling thread's kernel id (Linux), or 0 where /proc/thread-self does not exist. */
export function osThreadId(): number {
  try {
    const m = /\/task\/(\d+)$/.exec(readlinkSync('/proc/thread-self'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
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
  return found.size;
}

/**
 * Kills the processes thread `tid` of this process started, and their descendants. Never the main
 * thread's (case processes, the bundler): 0 for it, and for an id that is not a live thread here.
 */
export function killThreadChildren(tid: number): number {
  if (!Number.isSafeInteger(tid) || tid <= 0 || tid === process.pid) return 0;
  return reap(readChildren(`/proc/${process.pid}/task/${tid}/children`));
}

/** Kills the descendants of process `pid` (not `pid` itself). */
export function killDescendants(pid: number): number {
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return 0;
  return reap(childrenOfProcess(pid));
}
