/**
 * systemd integration of the worker daemon (Type=notify): READY=1 once the pool and the backend are up,
 * WATCHDOG=1 only while the consume loop makes progress (so systemd restarts a stuck worker), a STATUS=
 * line with throughput, and STOPPING=1 when draining.
 *
 * Messages go through the native module's sd_notify (an AF_UNIX datagram: Node has no such socket).
 * Without the native module, `systemd-notify --pid` is the fallback; systemd then only accepts the
 * message with NotifyAccess=all, which the operator's guide explains.
 */
import { spawnSync } from 'node:child_process';
import { sdNotify } from '../codec/index.js';
import type { Logger } from './log.js';

export type NotifySender = (message: string) => boolean;

function systemdNotifyFallback(message: string): boolean {
  const args = ['--pid=' + process.pid, ...message.split('\n').filter(Boolean)];
  const r = spawnSync('systemd-notify', args, { stdio: 'ignore', timeout: 2000 });
  return r.status === 0;
}

export function defaultNotifySender(env: NodeJS.ProcessEnv): NotifySender {
  // Not started by systemd (or Type= is not notify): nothing to tell, and nothing to spawn.
  if (!env.NOTIFY_SOCKET) return () => false;
  return (message) => sdNotify(message) || systemdNotifyFallback(message);
}

export interface WorkerProgress {
  /** True while the consume loop keeps turning. */
  readonly progressing: boolean;
  readonly casesCompleted: number;
  readonly heldBatches: string[];
  readonly state: string;
}

export class SystemdNotifier {
  readonly #send: NotifySender;
  readonly #logger: Logger | undefined;
  readonly #watchdogMs: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #statusTimer: NodeJS.Timeout | undefined;
  #failed = false;

  /** `env`: the daemon's environment (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID), as the command line read it. */
  constructor(options: { env: NodeJS.ProcessEnv; send?: NotifySender; logger?: Logger }) {
    const env = options.env;
    this.#send = options.send ?? defaultNotifySender(env);
    this.#logger = options.logger;
    const usec = Number(env.WATCHDOG_USEC);
    const pid = env.WATCHDOG_PID === undefined ? process.pid : Number(env.WATCHDOG_PID);
    // WATCHDOG_PID names the process the watchdog is meant for; children must not ping it.
    if (Number.isFinite(usec) && usec > 0 && pid === process.pid) this.#watchdogMs = usec / 1000;
  }

  /** True when systemd asked for watchdog pings (WatchdogSec=). */
  get watchdogEnabled(): boolean {
    return this.#watchdogMs !== undefined;
  }

  notify(message: string): void {
    try {
      this.#send(message);
    } catch (err) {
      if (!this.#failed) this.#logger?.warn('systemd_notify_failed', { message: (err as Error).message, notification: message.split('\n')[0] });
      this.#failed = true;
    }
  }

  /**
   * READY=1, then WATCHDOG=1 every half watchdog period while `worker.progressing`, and a STATUS=
   * line with throughput every `statusEveryMs`.
   */
  ready(worker: WorkerProgress, statusEveryMs = 5000): void {
    this.notify(`READY=1\nSTATUS=${status(worker, 0)}`);
    if (this.#watchdogMs !== undefined) {
      this.#timer = setInterval(() => {
        // A stalled loop stops the pings: systemd's watchdog then restarts the worker.
        if (worker.progressing) this.notify('WATCHDOG=1');
      }, Math.max(100, this.#watchdogMs / 2));
      this.#timer.unref();
    }
    let last = worker.casesCompleted;
    let lastAt = performance.now();
    this.#statusTimer = setInterval(() => {
      const now = performance.now();
      const rate = ((worker.casesCompleted - last) * 1000) / (now - lastAt);
      last = worker.casesCompleted;
      lastAt = now;
      this.notify(`STATUS=${status(worker, rate)}`);
    }, statusEveryMs);
    this.#statusTimer.unref();
  }

  stopping(): void {
    this.stop();
    this.notify('STOPPING=1\nSTATUS=draining');
  }

  stop(): void {
    clearInterval(this.#timer);
    clearInterval(this.#statusTimer);
  }
}

function status(worker: WorkerProgress, casesPerSec: number): string {
  return `${worker.state}: ${casesPerSec.toFixed(1)} cases/s, ${worker.heldBatches.length} batches held, ${worker.casesCompleted} cases done`;
}
