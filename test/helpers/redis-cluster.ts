/**
 * A throwaway Redis Cluster for tests: `masters` masters with one replica each (six servers by
 * default), `redis-server --cluster-enabled yes` on free ports in 10000–19999 (a node's cluster bus is
 * its port + 10000, which must be free too; see NODE_PORTS), a low `cluster-node-timeout` so a killed master's replica
 * is promoted within a few seconds, no persistence, then `redis-cli --cluster create … --cluster-replicas 1`.
 *
 * Start one only in the test that needs it, and stop it in an `after` hook (an exit hook kills what a
 * crashed test leaves behind).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { until } from './poll.ts';

export interface ClusterNodeProcess {
  port: number;
  child: ChildProcess;
}

export interface RedisCluster {
  /** Seed list for the queue config's `cluster_nodes`. */
  nodes: string[];
  ports: number[];
  /** The port of the master that currently serves `key`'s slot (asked of a live node). */
  masterOf(key: string): Promise<number>;
  /** SIGKILL of the server on `port`, like a crash. */
  kill9(port: number): Promise<void>;
  /** Sends `signal` to the server on `port` (SIGSTOP/SIGCONT freeze and thaw it: a replica that falls behind). */
  signal(port: number, signal: NodeJS.Signals): void;
  /** Closes the replication links of the master on `port` (its replicas get nothing it writes next). */
  dropReplicaLinks(port: number): Promise<void>;
  /** Ports of the replicas of the master on `port`. */
  replicasOf(port: number): Promise<number[]>;
  /** Waits until `key`'s slot is served by a master other than `oldPort` and the cluster is ok again. */
  awaitFailover(key: string, oldPort: number, timeoutMs?: number): Promise<number>;
  /** Total CPU seconds (user + sys) the cluster's live masters have used so far. */
  masterCpuSeconds(): Promise<number>;
  /** Stops every server and removes the data dir. Idempotent. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const c of live) {
      try {
        c.kill('SIGKILL');
      } catch {
        // gone already
      }
    }
  });
}

/** True when redis-server and redis-cli are both on PATH. */
export function clusterToolsAvailable(): boolean {
  for (const bin of ['redis-server', 'redis-cli']) {
    const r = spawnSync(bin, ['--version'], { stdio: 'ignore' });
    if (r.error !== undefined || r.status !== 0) return false;
  }
  return true;
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * Ports for cluster nodes: each node's bus listens on port + 10000, and both must stay free between
 * the check below and redis-server's bind. Node ports are taken from 10000–19999, so buses are on
 * 20000–29999: no node of one cluster can take a port another cluster's bus is about to bind (two
 * clusters of one test file start side by side; a bus port was once taken that way), and both stay
 * below the kernel's ephemeral range (net.ipv4.ip_local_port_range, where outgoing connections and
 * listen(0) take their ports). Ports handed out in this process are not handed out again until
 * their cluster stops.
 */
const NODE_PORTS = { from: 10000, to: 20000 };
const handedOut = new Set<number>();

/** `count` ports p with p and p + 10000 (the cluster bus) free right now, none handed out already. */
async function freeClusterPorts(count: number): Promise<number[]> {
  const out: number[] = [];
  for (let tries = 0; out.length < count && tries < 2000; tries++) {
    const p = NODE_PORTS.from + Math.floor(Math.random() * (NODE_PORTS.to - NODE_PORTS.from));
    if (handedOut.has(p) || out.includes(p)) continue;
    if ((await canBind(p)) && (await canBind(p + 10000)) && !handedOut.has(p)) {
      handedOut.add(p);
      out.push(p);
    }
  }
  if (out.length < count) {
    for (const p of out) handedOut.delete(p);
    throw new Error('no free port pairs for a redis cluster');
  }
  return out;
}

function waitExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

async function admin<T>(port: number, fn: (c: Redis) => Promise<T>): Promise<T> {
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  c.on('error', () => {});
  try {
    await c.connect();
    return await fn(c);
  } finally {
    c.disconnect();
  }
}


export async function startRedisCluster(opts: { masters?: number; nodeTimeoutMs?: number } = {}): Promise<RedisCluster> {
  // A missing tool fails the test with the package to install; it is never a silent skip.
  if (!clusterToolsAvailable()) throw new Error('redis-server or redis-cli is not on PATH: install them (Debian/Ubuntu: apt-get install redis-server redis-tools)');
  hookExit();
  const masters = opts.masters ?? 3;
  const nodeTimeout = opts.nodeTimeoutMs ?? 1500;
  const count = masters * 2;
  const dir = mkdtempSync(join(tmpdir(), 'mg-cluster-'));
  const procs = new Map<number, ChildProcess>();
  const output = new Map<number, string>();
  let stopped = false;
  let ports: number[] = [];

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(
      [...procs.values()].map(async (c) => {
        c.kill('SIGKILL');
        await waitExit(c, 5000);
      }),
    );
    rmSync(dir, { recursive: true, force: true });
    for (const p of ports) handedOut.delete(p);
  };

  try {
    ports = await freeClusterPorts(count);
    for (const port of ports) {
      const args = [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--cluster-enabled', 'yes',
        '--cluster-config-file', `nodes-${port}.conf`,
        '--cluster-node-timeout', String(nodeTimeout),
        '--cluster-require-full-coverage', 'no',
        '--save', '',
        '--appendonly', 'no',
        '--dir', dir,
        '--daemonize', 'no',
        '--protected-mode', 'no',
      ];
      const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      live.add(child);
      child.once('exit', () => live.delete(child));
      const keep = (d: Buffer) => output.set(port, ((output.get(port) ?? '') + d.toString('utf8')).slice(-3000));
      child.stdout?.on('data', keep);
      child.stderr?.on('data', keep);
      procs.set(port, child);
    }
    for (const port of ports) {
      await until(`node ${port} answering`, async () => {
        const c = procs.get(port)!;
        if (c.exitCode !== null) throw new Error(`redis-server ${port} exited: ${output.get(port)}`);
        return (await admin(port, (r) => r.ping())) === 'PONG';
      }, { timeoutMs: 10_000, intervalMs: 100, retryErrors: true });
    }
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}\n${create.stderr}`);
    // Every node sees the whole cluster as ok, and every replica has finished its first sync.
    for (const port of ports) {
      await until(`node ${port} sees cluster_state:ok`, () =>
        admin(port, async (r) => {
          const info = (await r.call('CLUSTER', 'INFO')) as string;
          return /cluster_state:ok/.test(info) && new RegExp(`cluster_known_nodes:${count}\\b`).test(info);
        }),
        { timeoutMs: 30_000, intervalMs: 100, retryErrors: true },
      );
      await until(`node ${port} replication settled`, () =>
        admin(port, async (r) => {
          const info = await r.info('replication');
          return /role:master/.test(info) || /master_link_status:up/.test(info);
        }),
        { timeoutMs: 30_000, intervalMs: 100, retryErrors: true },
      );
    }

    const livePorts = () => ports.filter((p) => procs.get(p)!.exitCode === null && procs.get(p)!.signalCode === null);
    const masterOf = async (key: string): Promise<number> => {
      let lastErr: unknown;
      for (const port of livePorts()) {
        try {
          return await admin(port, async (r) => {
            const slot = Number(await r.call('CLUSTER', 'KEYSLOT', key));
            const slots = (await r.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, ...unknown[]], ...unknown[]][];
            for (const [from, to, master] of slots) if (slot >= from && slot <= to) return Number(master[1]);
            throw new Error(`slot ${slot} is not served`);
          });
        } catch (err) {
          lastErr = err;
        }
      }
      throw lastErr instanceof Error ? lastErr : new Error('no live node');
    };

    return {
      nodes: ports.map((p) => `127.0.0.1:${p}`),
      ports,
      masterOf,
      async kill9(port) {
        const c = procs.get(port);
        if (!c) throw new Error(`no node on ${port}`);
        c.kill('SIGKILL');
        await waitExit(c, 5000);
      },
      signal(port, signal) {
        const c = procs.get(port);
        if (!c) throw new Error(`no node on ${port}`);
        c.kill(signal);
      },
      async dropReplicaLinks(port) {
        await admin(port, (r) => r.call('CLIENT', 'KILL', 'TYPE', 'replica'));
      },
      async replicasOf(port) {
        return admin(port, async (r) => {
          const info = await r.info('replication');
          return [...info.matchAll(/slave\d+:ip=[^,]+,port=(\d+)/g)].map((m) => Number(m[1]));
        });
      },
      async awaitFailover(key, oldPort, timeoutMs = 30_000) {
        let promoted = 0;
        await until(`failover of ${key} away from ${oldPort}`, async () => {
          const m = await masterOf(key);
          if (m === oldPort) return false;
          const info = (await admin(m, (r) => r.call('CLUSTER', 'INFO'))) as string;
          promoted = m;
          return /cluster_state:ok/.test(info);
        }, { timeoutMs, intervalMs: 100, retryErrors: true });
        return promoted;
      },
      async masterCpuSeconds() {
        let total = 0;
        for (const port of livePorts()) {
          total += await admin(port, async (r) => {
            const info = await r.info();
            if (!/role:master/.test(info)) return 0;
            const sys = Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 0);
            const user = Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 0);
            return sys + user;
          });
        }
        return total;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
