/**
 * Case process entry (`--isolation process`): the same chunk runner as a case thread, in a child
 * process started under Node's permission model and OS limits (src/execution/process-pool.ts). Talks
 * to its parent over the IPC channel only:
 *
 *   parent → child  { t: 'run', req }            run a chunk; results stream back one per case
 *                   { t: 'check', taskUrl, implUrl }  load the modules, answer { t: 'checked', info }
 *                   { t: 'heap' }                 answer { t: 'heap', bytes } after a full GC
 *                   { t: 'describe', implUrl }     answer { t: 'described', answer } (an `http` export)
 *   child → parent  begin / results / end (ThreadMessage), then { t: 'done', token }
 *
 * A process that has used CPU_RETIRE_S of CPU time exits after its chunk (its RLIMIT_CPU is twice
 * that), and the parent starts a fresh one.
 */
import { checkModules, describeImplementation, heapAfterGc, runCases } from './case-thread.js';
import { lockRealm } from './realm-lock.js';
import type { ChunkRequest, ThreadMessage } from '../execution/protocol.js';

const CPU_RETIRE_S = Number(process.argv[2] ?? 300);

// Our own reference to the channel, taken before user code can replace process.send.
const send = process.send!.bind(process);

type Request =
  | { t: 'run'; req: Omit<ChunkRequest, 'progress'> }
  | { t: 'check'; taskUrl: string; implUrl: string }
  | { t: 'heap' }
  | { t: 'describe'; implUrl: string };

let queue = Promise.resolve();
const onMessage = (m: unknown) => {
  // One request at a time, in order.
  queue = queue.then(() => handle(m as Request)).catch((err: unknown) => {
    process.stderr.write(`case process: ${(err as Error)?.stack ?? err}\n`);
    process.exit(70);
  });
};
// Node delivers IPC messages only while a 'message' listener exists; once the realm is locked they
// reach `onMessage` alone, whoever else listens.
process.on('message', () => {});
process.on('disconnect', () => process.exit(0));
// Before any user module loads (the first 'run' or 'check' request imports them).
lockRealm(onMessage);

async function handle(m: Request): Promise<void> {
  if (m.t === 'run') {
    await runCases(m.req, (msg: ThreadMessage) => send(msg), { threadId: process.pid, flushMs: 0 });
    const { user, system } = process.cpuUsage();
    const retire = (user + system) / 1e6 > CPU_RETIRE_S;
    await new Promise<void>((resolve) => send({ t: 'done', token: m.req.token, retire }, undefined, {}, () => resolve()));
    if (retire) process.exit(0);
  } else if (m.t === 'check') {
    send({ t: 'checked', info: await checkModules(m) });
  } else if (m.t === 'describe') {
    send({ t: 'described', answer: await describeImplementation(m) });
  } else if (m.t === 'heap') {
    send({ t: 'heap', bytes: heapAfterGc() });
  }
}

send({ t: 'ready' });
