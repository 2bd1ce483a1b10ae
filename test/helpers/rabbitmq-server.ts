/**
 * Spawns a throwaway RabbitMQ node for tests from Debian's `rabbitmq-server` package: free AMQP,
 * distribution and epmd ports, its own node name, and data, log and home folders under one temporary
 * folder owned by the `rabbitmq` user (the server refuses to run as root; it is started through
 * `setpriv` as that user). Its own epmd (on its own port) is stopped with it. Starts in ~6 s.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './net.ts';

const SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server';

export interface RabbitServer {
  port: number;
  url: string;
  /** Stops the node for good, its epmd too, and removes its folders. Idempotent. */
  stop(): Promise<void>;
  /** Graceful stop, then the same node again (durable queues and persistent messages survive). */
  restart(): Promise<void>;
  /** SIGKILL of the node, like a crash; `restart()` brings it back. */
  kill9(): Promise<void>;
}

/** Why RabbitMQ tests cannot run here, or undefined when they can. */
export function rabbitUnavailable(): string | undefined {
  if (spawnSync('test', ['-x', SERVER]).status !== 0) return `${SERVER} is not installed (Debian package rabbitmq-server)`;
  const id = spawnSync('id', ['-u', 'rabbitmq'], { encoding: 'utf8' });
  if (id.status !== 0) return 'there is no rabbitmq user (Debian package rabbitmq-server creates it)';
  if (process.getuid?.() !== 0) return 'starting rabbitmq-server as the rabbitmq user needs root';
  return undefined;
}

const live = new Set<ChildProcess>();
const epmds = new Set<number>();
let hooked = false;
function hook(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const c of live) {
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (const port of epmds) spawnSync('epmd', ['-kill'], { env: { ...process.env, ERL_EPMD_PORT: String(port) }, stdio: 'ignore' });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.setTimeout(500, () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(false));
    // An AMQP server answers a protocol header with its Connection.Start frame.
    s.once('connect', () => s.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1')));
    s.once('data', () => {
      s.destroy();
      resolve(true);
    });
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

/** Starts a node; fails naming the Debian package when rabbitmq-server is not installed. */
export async function startRabbit(): Promise<RabbitServer> {
  const missing = rabbitUnavailable();
  if (missing) throw new Error(`cannot start RabbitMQ for the tests: ${missing}`);
  hook();
  const ids = spawnSync('id', ['-u', 'rabbitmq'], { encoding: 'utf8' }).stdout.trim();
  const gid = Number(spawnSync('id', ['-g', 'rabbitmq'], { encoding: 'utf8' }).stdout.trim());
  const uid = Number(ids);
  const dir = mkdtempSync(join(tmpdir(), 'mg-rabbit-'));
  chmodSync(dir, 0o755);
  for (const sub of ['mnesia', 'log', 'home']) mkdirSync(join(dir, sub));
  const [port, dist, epmd] = [await freePort(), await freePort(), await freePort()];
  const node = `mgtest${port}@localhost`;
  writeFileSync(join(dir, 'rabbitmq.conf'), ['loopback_users = none', `listeners.tcp.default = 127.0.0.1:${port}`, 'log.console = false', 'log.file.level = warning', ''].join('\n'));
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  for (const p of [dir, join(dir, 'mnesia'), join(dir, 'log'), join(dir, 'home'), join(dir, 'rabbitmq.conf'), join(dir, 'enabled_plugins')]) chownSync(p, uid, gid);
  epmds.add(epmd);
  const env = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: join(dir, 'home'),
    LANG: 'C.UTF-8',
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(dist),
    ERL_EPMD_PORT: String(epmd),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_PID_FILE: join(dir, 'rabbit.pid'),
    RABBITMQ_CONF_ENV_FILE: join(dir, 'none.env'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'none.config'),
  };
  let child: ChildProcess | undefined;
  let output = '';

  const launch = async () => {
    const c = spawn('setpriv', ['--reuid', String(uid), '--regid', String(gid), '--init-groups', SERVER], { env, cwd: dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    live.add(c);
    c.once('exit', () => live.delete(c));
    c.stdout!.on('data', (d) => (output = (output + d).slice(-4000)));
    c.stderr!.on('data', (d) => (output = (output + d).slice(-4000)));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (c.exitCode !== null) throw new Error(`rabbitmq-server exited (${c.exitCode}) while starting:\n${output}`);
      if (await canConnect(port)) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`rabbitmq-server did not accept connections on ${port} within 60 s:\n${output}`);
  };
  const signal = async (sig: NodeJS.Signals, waitMs: number) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    try {
      process.kill(-c.pid!, sig);
    } catch {
      return;
    }
    if (!(await exited(c, waitMs))) {
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        // gone
      }
      await exited(c, 5000);
    }
  };

  await launch();
  let stopped = false;
  return {
    port,
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    async stop() {
      if (stopped) return;
      stopped = true;
      await signal('SIGTERM', 20_000);
      spawnSync('epmd', ['-kill'], { env: { ...process.env, ERL_EPMD_PORT: String(epmd) }, stdio: 'ignore' });
      epmds.delete(epmd);
      rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await signal('SIGTERM', 20_000);
      await launch();
    },
    async kill9() {
      await signal('SIGKILL', 5000);
    },
  };
}
