/**
 * Spawns `fauxqs` (an SQS/SNS/S3 emulator, an npm devDependency) as a child process, in memory, behind
 * a small TCP proxy on a free port: `outage(ms)` cuts every connection and refuses new ones for a
 * while, as when the SQS endpoint or the network to it goes away and comes back (SQS is a managed
 * service: its data outlives an outage). fauxqs's own persistence is not used: with it,
 * ChangeMessageVisibility fails and loses the message (fauxqs 2.4), which SQS never does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { freePort } from './net.ts';
import { until } from './poll.ts';

export interface Fauxqs {
  port: number;
  endpoint: string;
  /** Stops it for good and removes its data. Idempotent. */
  stop(): Promise<void>;
  /** Cuts every connection and refuses new ones for `ms`, then serves again (messages kept). */
  outage(ms: number): Promise<void>;
  /** The emulator's last output (stdout and stderr), for a failing test's message. */
  logTail(): string;
}

const entry = join(dirname(fileURLToPath(import.meta.url)), 'fauxqs-entry.mjs');

function installed(): boolean {
  try {
    return existsSync(fileURLToPath(import.meta.resolve('fauxqs')));
  } catch {
    return false;
  }
}

/** Why SQS tests cannot run here, or undefined when they can. */
export function fauxqsUnavailable(): string | undefined {
  return installed() ? undefined : 'fauxqs is not installed (npm ci installs it: a devDependency)';
}

const live = new Set<ChildProcess>();
let hooked = false;

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export async function startFauxqs(): Promise<Fauxqs> {
  if (!installed()) throw new Error(fauxqsUnavailable());
  if (!hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  const [port, inner] = [await freePort(), await freePort()];
  let down = false;
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    if (down) return void client.destroy();
    const upstream = net.connect({ port: inner, host: '127.0.0.1' });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve, reject) => proxy.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
  let child: ChildProcess | undefined;
  let output = '';
  const launch = async () => {
    const c = spawn(process.execPath, [entry], {
      env: { ...process.env, FAUXQS_PORT: String(inner) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    live.add(c);
    c.once('exit', () => live.delete(c));
    c.stdout!.on('data', (d) => (output = (output + d).slice(-4000)));
    c.stderr!.on('data', (d) => (output = (output + d).slice(-4000)));
    await until(
      () => `fauxqs to listen on ${inner}:\n${output}`,
      async () => {
        if (c.exitCode !== null) throw new Error(`fauxqs exited (${c.exitCode}) while starting:\n${output}`);
        return listening(inner);
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  };
  const halt = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGTERM');
    if (!(await exited(c, 5000))) {
      c.kill('SIGKILL');
      await exited(c, 5000);
    }
  };
  try {
    await launch();
  } catch (err) {
    proxy.close();
    throw err;
  }
  let stopped = false;
  return {
    port,
    endpoint: `http://127.0.0.1:${port}`,
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const s of sockets) s.destroy();
      proxy.close();
      await halt();
    },
    async outage(ms: number) {
      down = true;
      for (const s of sockets) s.destroy();
      await new Promise((r) => setTimeout(r, ms));
      down = false;
    },
    logTail: () => output,
  };
}
