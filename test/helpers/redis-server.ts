/**
 * Spawns a throwaway `redis-server` for tests: a free port (never 6379), a temporary data dir, no RDB
 * snapshots, optional AOF with fsync on every write (so restart() keeps the data).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { freePort } from './net.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { until } from './poll.ts';

export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  /** Stops the server for good and removes its data dir. Idempotent. */
  stop(): Promise<void>;
  /** Graceful shutdown, then a new server on the same port and dir (data persists with AOF). */
  restart(): Promise<void>;
  /** SIGKILL, like a crash; `restart()` brings it back (with what the AOF holds). */
  kill9(): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

/** True when `redis-server` is on PATH. */
export function redisAvailable(): boolean {
  const r = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  return r.error === undefined && r.status === 0;
}


/** Asks the server on `port` for INFO over a raw socket: its pid and whether it is still loading data. */
function probe(port: number): Promise<{ pid: number; loading: boolean } | null> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let buf = Buffer.alloc(0);
    const done = (r: { pid: number; loading: boolean } | null) => {
      sock.destroy();
      resolve(r);
    };
    sock.setTimeout(500, () => done(null));
    sock.once('error', () => done(null));
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf[0] !== 0x24 /* $ */) return done(null); // an error reply
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return;
      const len = Number(buf.subarray(1, eol).toString('latin1'));
      if (buf.length < eol + 2 + len) return;
      const text = buf.subarray(eol + 2, eol + 2 + len).toString('latin1');
      const pid = /process_id:(\d+)/.exec(text);
      done(pid ? { pid: Number(pid[1]), loading: /loading:1/.test(text) } : null);
    });
    sock.once('connect', () => sock.write('*1\r\n$4\r\nINFO\r\n'));
  });
}

function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

function spawnServer(port: number, dir: string, appendonly: boolean): { child: ChildProcess; output: () => string } {
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', appendonly ? 'yes' : 'no',
    '--appendfsync', 'always',
    '--dir', dir,
    '--daemonize', 'no',
    '--protected-mode', 'no',
  ];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.once('error', (err) => keep(Buffer.from(`spawn error: ${err.message}\n`)));
  return { child, output: () => out };
}

async function waitReady(port: number, child: ChildProcess, output: () => string, timeoutMs = 10_000): Promise<void> {
  try {
    await until(
      () => `redis-server on port ${port} to answer PING:\n${output()}`,
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`redis-server on port ${port} exited (${child.exitCode ?? child.signalCode}):\n${output()}`);
        }
        // Our own child must answer, not whatever else grabbed the port first.
        const info = await probe(port);
        return info !== null && info.pid === child.pid && !info.loading;
      },
      timeoutMs,
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

export async function startRedis(opts: { appendonly?: boolean } = {}): Promise<RedisServer> {
  // A missing server fails the test with the package to install; it is never a silent skip.
  if (!redisAvailable()) throw new Error('redis-server is not on PATH: install it (Debian/Ubuntu: apt-get install redis-server)');
  installExitHook();
  const appendonly = opts.appendonly ?? true;
  const dir = mkdtempSync(join(tmpdir(), 'mg-redis-'));
  let port = 0;
  let current: ChildProcess | undefined;

  // A free port can be taken between probing and binding: try a few.
  let lastErr: unknown;
  for (let attempt = 0; attempt < 5 && current === undefined; attempt++) {
    port = await freePort();
    const { child, output } = spawnServer(port, dir, appendonly);
    try {
      await waitReady(port, child, output);
      current = child;
    } catch (err) {
      lastErr = err;
      child.kill('SIGKILL');
      await waitExit(child, 2000);
    }
  }
  if (current === undefined) {
    rmSync(dir, { recursive: true, force: true });
    throw lastErr instanceof Error ? lastErr : new Error(String(lastErr));
  }

  let stopped = false;
  // stop/restart/kill9 run one at a time, so stop() never races a restart that is spawning a server.
  let chain: Promise<void> = Promise.resolve();
  const serial = (fn: () => Promise<void>): Promise<void> => {
    const p = chain.then(fn);
    chain = p.catch(() => undefined);
    return p;
  };

  async function halt(signal: NodeJS.Signals): Promise<void> {
    const child = current;
    current = undefined;
    if (!child) return;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      if (!(await waitExit(child, 10_000))) {
        child.kill('SIGKILL');
        await waitExit(child, 5000);
      }
    }
  }

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    stop: () =>
      serial(async () => {
        if (stopped) return;
        stopped = true;
        await halt('SIGTERM');
        rmSync(dir, { recursive: true, force: true });
      }),
    restart: () => serial(restart),
    kill9: () => serial(() => halt('SIGKILL')),
  };

  async function restart(): Promise<void> {
    if (stopped) throw new Error('redis-server was stopped');
    await halt('SIGTERM');
    // The old process may hold the port for a moment after exit: retry the bind.
    let lastError: unknown;
    for (let attempt = 0; attempt < 20; attempt++) {
      const { child, output } = spawnServer(port, dir, appendonly);
      try {
        await waitReady(port, child, output);
        current = child;
        return;
      } catch (err) {
        lastError = err;
        await waitExit(child, 2000);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  }
}
