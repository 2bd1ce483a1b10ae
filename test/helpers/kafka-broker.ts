/**
 * A throwaway Kafka-protocol broker for tests: librdkafka's mock cluster, started by the tiny C program
 * `kafka-mock.c` beside this file. The program is compiled once (`cc … -lrdkafka`) into a cache dir
 * keyed by its source hash, then each `startKafkaMock()` runs it and reads the bootstrap address from
 * its first line of stdout. Needs a C compiler and librdkafka's headers (Debian: librdkafka-dev).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface KafkaMock {
  /** `host:port[,host:port]` */
  bootstrap: string;
  pid: number;
  /** Stops the cluster (all data is gone). Idempotent. */
  stop(): Promise<void>;
}

export interface KafkaMockOptions {
  /** Partitions of the topics created up front. @defaultValue 4 */
  partitions?: number;
  /** Topics to create with `partitions` partitions; others are auto-created (4 partitions) on first use. */
  topics?: string[];
  /** @defaultValue 1 */
  brokers?: number;
}

const source = join(dirname(fileURLToPath(import.meta.url)), 'kafka-mock.c');
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
let built: { bin?: string; error?: string } | undefined;

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

/** Compiles kafka-mock.c once; returns the binary path, or the reason it cannot be built. */
export function buildKafkaMock(): { bin?: string; error?: string } {
  if (built) return built;
  const src = readFileSync(source);
  const hash = createHash('sha256').update(src).digest('hex').slice(0, 16);
  const dir = join(process.env.METAGUARD_TEST_CACHE ?? join(tmpdir(), 'metaguard-test-cache'), 'kafka-mock');
  const bin = join(dir, `kafka-mock-${hash}`);
  if (existsSync(bin)) return (built = { bin });
  mkdirSync(dir, { recursive: true });
  const tmp = `${bin}.${randomBytes(4).toString('hex')}.tmp`;
  const cc = process.env.CC ?? 'cc';
  const r = spawnSync(cc, ['-O1', '-o', tmp, source, '-lrdkafka'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    rmSync(tmp, { force: true });
    const why = r.error ? r.error.message : (r.stderr || r.stdout || `exit ${r.status}`).trim().split('\n').slice(0, 5).join('\n');
    return (built = { error: `cannot build the Kafka mock broker with ${cc}: install gcc and librdkafka-dev (Debian/Ubuntu: apt-get install gcc librdkafka-dev): ${why}` });
  }
  renameSync(tmp, bin);
  return (built = { bin });
}

/** Why Kafka tests cannot run here, or undefined when they can. */
export function kafkaMockUnavailable(): string | undefined {
  return buildKafkaMock().error;
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

export async function startKafkaMock(opts: KafkaMockOptions = {}): Promise<KafkaMock> {
  const { bin, error } = buildKafkaMock();
  if (!bin) throw new Error(error);
  installExitHook();
  const args = ['--brokers', String(opts.brokers ?? 1), '--partitions', String(opts.partitions ?? 4), ...(opts.topics ?? [])];
  // stdin stays an open pipe: the broker exits on EOF, so it never outlives this process.
  const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-4000);
  });
  const bootstrap = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`kafka mock printed no bootstrap address within 10 s:\n${stderr}`)), 10_000);
    const onData = (d: Buffer) => {
      out += d.toString('utf8');
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      cleanup();
      resolve(out.slice(0, nl).trim());
    };
    const onExit = (code: number | null, signal: string | null) => fail(new Error(`kafka mock exited (${code ?? signal}) before it was ready:\n${stderr}`));
    const onError = (err: Error) => fail(err);
    function cleanup() {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      child.off('error', onError);
    }
    function fail(err: Error) {
      cleanup();
      child.kill('SIGKILL');
      reject(err);
    }
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
    child.once('error', onError);
  });
  if (!/^[\w.-]+:\d+(,[\w.-]+:\d+)*$/.test(bootstrap)) {
    child.kill('SIGKILL');
    throw new Error(`kafka mock printed an unexpected bootstrap address: ${JSON.stringify(bootstrap)}`);
  }
  let stopped = false;
  return {
    bootstrap,
    pid: child.pid!,
    async stop() {
      if (stopped) return;
      stopped = true;
      child.stdin?.end();
      child.kill('SIGTERM');
      if (!(await waitExit(child, 5000))) {
        child.kill('SIGKILL');
        await waitExit(child, 2000);
      }
    },
  };
}
