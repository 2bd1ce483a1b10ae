/**
 * Spawns a throwaway RabbitMQ node for tests from Debian's `rabbitmq-server` package: free AMQP,
 * distribution and epmd ports, its own node name, and data, log and home folders under one temporary
 * folder owned by the `rabbitmq` user (the server refuses to run as root; it is started through
 * `setpriv` as that user). Its own epmd (on its own port) is stopped with it. Starts in ~6 s.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './net.ts';
import { until } from './poll.ts';

const SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server';

export interface RabbitServer {
  port: number;
  url: string;
  /** With `tls`: the TLS listener's port and an amqps:// URL to it (127.0.0.1). */
  tlsPort?: number;
  amqpsUrl?: string;
  /** Stops the node for good, its epmd too, and removes its folders. Idempotent. */
  stop(): Promise<void>;
  /** Graceful stop, then the same node again (durable queues and persistent messages survive). */
  restart(): Promise<void>;
  /** SIGKILL of the node, like a crash; `restart()` brings it back. */
  kill9(): Promise<void>;
  /** The last `bytes` of the node's log (warnings and errors), for a failing test's message. */
  logTail(bytes?: number): string;
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

export interface TlsFiles {
  /** PEM files: the CA that signed the server's certificate, the certificate, its key. */
  ca: string;
  cert: string;
  key: string;
}

/**
 * A throwaway CA and a server certificate for 127.0.0.1 / localhost signed by it, made with the
 * `openssl` command line in `dir`.
 */
export function makeTlsFiles(dir: string): TlsFiles {
  const run = (args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr || r.error?.message}`);
  };
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=metaguard test CA', '-keyout', 'ca.key', '-out', 'ca.pem']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr']);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n');
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'san.ext', '-out', 'server.pem']);
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
}

/**
 * Starts a node; fails naming the Debian package when rabbitmq-server is not installed. With `tls`,
 * the node also listens for AMQP over TLS (amqps) on a port of its own, with those files.
 */
export async function startRabbit(options: { tls?: TlsFiles } = {}): Promise<RabbitServer> {
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
  const tlsPort = options.tls ? await freePort() : undefined;
  const node = `mgtest${port}@localhost`;
  const conf = ['loopback_users = none', `listeners.tcp.default = 127.0.0.1:${port}`, 'log.console = false', 'log.file.level = warning'];
  const owned = [dir, join(dir, 'mnesia'), join(dir, 'log'), join(dir, 'home'), join(dir, 'rabbitmq.conf'), join(dir, 'enabled_plugins')];
  if (options.tls) {
    // The node runs as the rabbitmq user: it reads copies of the files in its own folder.
    for (const [name, from] of Object.entries(options.tls)) {
      copyFileSync(from, join(dir, `tls-${name}.pem`));
      owned.push(join(dir, `tls-${name}.pem`));
    }
    conf.push(
      `listeners.ssl.default = 127.0.0.1:${tlsPort}`,
      `ssl_options.cacertfile = ${join(dir, 'tls-ca.pem')}`,
      `ssl_options.certfile = ${join(dir, 'tls-cert.pem')}`,
      `ssl_options.keyfile = ${join(dir, 'tls-key.pem')}`,
      'ssl_options.verify = verify_none',
      'ssl_options.fail_if_no_peer_cert = false',
    );
  }
  writeFileSync(join(dir, 'rabbitmq.conf'), [...conf, ''].join('\n'));
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  for (const p of owned) chownSync(p, uid, gid);
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
    await until(
      () => `rabbitmq-server to accept connections on ${port}:\n${output}`,
      async () => {
        if (c.exitCode !== null) throw new Error(`rabbitmq-server exited (${c.exitCode}) while starting:\n${output}`);
        return (await canConnect(port)) && (tlsPort === undefined || (await listening(tlsPort)));
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
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
    ...(tlsPort !== undefined ? { tlsPort, amqpsUrl: `amqps://guest:guest@127.0.0.1:${tlsPort}` } : {}),
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
    logTail(bytes = 6000) {
      try {
        return readFileSync(join(dir, 'log', `${node}.log`), 'utf8').slice(-bytes);
      } catch (err) {
        return `(no log: ${(err as Error).message})`;
      }
    },
  };
}
