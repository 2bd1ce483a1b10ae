/**
 * A Metamorphic Guard user's configuration works unchanged: `--config FILE.toml` with the guides'
 * tables and ${VAR} expansion, precedence flags > env > file > defaults, the guides' queue-config
 * keys (implemented, or accepted with a one-line warning), and the command line's help, suggestions,
 * negative values and refusals of silent defaults. The operator commands run against a real
 * redis-server started on a free port.
 */
import { after, before, describe, it } from 'node:test';
import { wireError } from '../src/errors.ts';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expandEnv, parseConfigText } from '../src/options/config-file.ts';
import { evaluateSchema } from '../src/options/evaluate.ts';
import { resolveEvaluateOptions } from '../src/evaluate.ts';
import { setQueueConfigWarningSink, validateQueueConfig } from '../src/options/queue.ts';
import { loadPolicy } from '../src/options/policy.ts';
import { parseFlags } from '../src/cli/args.ts';
import { editDistance, nearest } from '../src/util/text.ts';
import { runCli, type CliResult } from './helpers/run-cli.ts';
import { startRedis, type RedisServer } from './helpers/redis-server.ts';
import { createBackend } from '../src/queue/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'mg-config-'));
let files = 0;
function file(text: string, ext = 'toml'): string {
  const path = join(dir, `f${files++}.${ext}`);
  writeFileSync(path, text);
  return path;
}
const show = (r: CliResult) => `exit ${r.code}\nstdout: ${r.stdout.slice(0, 800)}\nstderr: ${r.stderr.slice(0, 800)}`;
const errLines = (r: CliResult) => r.stderr.split('\n').filter((l) => l.trim());

// The guides' own examples, verbatim.
const devToml = `[dispatcher]
type = "queue"

[queue]
config = '''
{
  "backend": "memory",
  "spawn_local_workers": true
}
'''
`;
const redisToml = `[dispatcher]
type = "queue"

[queue]
config = '''
{
  "backend": "redis",
  "connection": {
    "host": "redis.example.com",
    "port": 6379,
    "password": "\${REDIS_PASSWORD}"
  },
  "lease_seconds": 60,
  "heartbeat_timeout": 30,
  "compress": true,
  "adaptive_batching": true,
  "initial_batch_size": 10,
  "max_batch_size": 100
}
'''
`;

describe('config files (--config / METAGUARD_CONFIG)', () => {
  it('reads the guides\' [dispatcher] and [queue] tables, expanding ${VAR} from the environment', () => {
    const o = resolveEvaluateOptions({ flags: { task: 'top_k', config: file(redisToml) }, env: { REDIS_PASSWORD: 's3cret' } });
    assert.equal(o.dispatcher, 'queue');
    const qc = o.queueConfig as { backend: string; connection: { password: string; host: string } };
    assert.equal(qc.backend, 'redis');
    assert.equal(qc.connection.password, 's3cret');
    assert.equal(validateQueueConfig(qc).connection!.host, 'redis.example.com');
  });

  it('an unset ${VAR} without a default is an error naming it; ${VAR:-default} falls back', () => {
    assert.throws(() => resolveEvaluateOptions({ flags: { task: 'top_k', config: file(redisToml) }, env: {} }), /\$\{REDIS_PASSWORD\} is not set/);
    assert.equal(expandEnv('${HOST:-localhost}:${PORT:-6379}', { PORT: '6380' }, 'x'), 'localhost:6380');
    assert.equal(expandEnv('$${LITERAL}', {}, 'x'), '${LITERAL}');
  });

  it('METAGUARD_CONFIG names the file; [gating], [metrics], [logging] and top-level options are read', () => {
    const path = file(`n = 77\nseed = 9\n[gating]\nmin_delta = -0.05\nci_method = "wilson"\n[metrics]\nenabled = true\nport = 9999\n[logging]\njson = true\nlevel = "warn"\n`);
    const o = resolveEvaluateOptions({ flags: { task: 'top_k' }, env: { METAGUARD_CONFIG: path } });
    assert.deepEqual([o.n, o.seed, o.minDelta, o.ciMethod, o.metrics, o.metricsPort, o.logJson, o.logLevel], [77, 9, -0.05, 'wilson', true, 9999, true, 'warn']);
  });

  it('precedence: flags > env > file > defaults', () => {
    const path = file('n = 77\nseed = 9\n[gating]\nalpha = 0.1\n');
    const o = resolveEvaluateOptions({ flags: { task: 'top_k', config: path, n: '5' }, env: { METAGUARD_N: '6', METAGUARD_SEED: '8' } });
    assert.equal(o.n, 5, 'flag beats env and file');
    assert.equal(o.seed, 8, 'env beats file');
    assert.equal(o.alpha, 0.1, 'file beats default');
    assert.equal(o.minPassRate, 0.8, 'default');
  });

  it('unknown keys and tables are errors naming them; a policy file with [dispatcher] points at --config', () => {
    assert.throws(() => parseConfigText('[dispatcher]\ntyp = "queue"\n', 'c.toml', evaluateSchema, {}), /c\.toml: dispatcher\.typ: unknown key/);
    assert.throws(() => parseConfigText('[dispatch]\ntype = "queue"\n', 'c.toml', evaluateSchema, {}), /\[dispatch\]: unknown key/);
    assert.throws(() => parseConfigText('[metrics]\nport = "x"\n', 'c.toml', evaluateSchema, {}) && resolveEvaluateOptions({ flags: { task: 'top_k', config: file('[metrics]\nport = "x"\n') }, env: {} }), /metrics\.port: must be a number/);
    assert.throws(() => loadPolicy(file('[dispatcher]\ntype = "queue"\n[gating]\nmin_delta = 0\n')), /\[dispatcher\] is a config-file table.*--config/);
  });

  it('a memory queue spawns one local worker per thread (spawn_local_workers true, or not given)', () => {
    const o = resolveEvaluateOptions({ flags: { task: 'top_k', config: file(devToml), parallel: '3' }, env: {} });
    assert.equal((o.queueConfig as { spawn_local_workers: number }).spawn_local_workers, 3);
    const bare = resolveEvaluateOptions({ flags: { task: 'top_k', dispatcher: 'queue', parallel: '2' }, env: {} });
    assert.equal((bare.queueConfig as { spawn_local_workers: number }).spawn_local_workers, 2);
    assert.equal(validateQueueConfig({ backend: 'memory', spawn_local_workers: true }).spawn_local_workers, availableParallelism());
  });
});

describe('the guides\' queue-config keys', () => {
  const warnings: string[] = [];
  before(() => setQueueConfigWarningSink((m) => warnings.push(m)));

  it('decode_responses and auto_commit=true are accepted with one warning each saying why they do nothing', () => {
    validateQueueConfig({ backend: 'redis', connection: { host: 'h', decode_responses: true } });
    validateQueueConfig({ backend: 'kafka', bootstrap_servers: 'k:9092', auto_commit: true });
    assert.equal(warnings.length, 2, warnings.join('\n'));
    assert.match(warnings[0]!, /connection\.decode_responses has no effect/);
    assert.match(warnings[1]!, /auto_commit = true has no effect: .*after the results/);
    validateQueueConfig({ backend: 'kafka', bootstrap_servers: 'k:9092', enable_auto_commit: false });
    assert.equal(warnings.length, 2, 'enable_auto_commit=false is what metaguard does: no warning');
  });

  it('session_timeout_ms sets the Kafka session (heartbeat_timeout) unless heartbeat_timeout is given', () => {
    assert.equal(validateQueueConfig({ backend: 'kafka', bootstrap_servers: 'k:9092', session_timeout_ms: 30000 }).heartbeat_timeout, 30);
    assert.equal(validateQueueConfig({ backend: 'kafka', bootstrap_servers: 'k:9092', session_timeout_ms: 30000, heartbeat_timeout: 12 }).heartbeat_timeout, 12);
  });

  it('asynq-style queue_weights name the normal priority "default"', () => {
    assert.deepEqual(validateQueueConfig({ queue_weights: { critical: 6, default: 3, low: 1 } }).queue_weights, { critical: 6, high: 3, normal: 3, low: 1 });
    assert.throws(() => validateQueueConfig({ queue_weights: { urgent: 1 } }), /queue_weights\.urgent: unknown priority/);
  });
});

describe('flag parsing', () => {
  it('negative numbers are values, -h is help, typos get the nearest flag', () => {
    const schema = { minDelta: evaluateSchema.minDelta, task: evaluateSchema.task };
    assert.equal(parseFlags(['--min-delta', '-0.01'], schema).flags.minDelta, '-0.01');
    assert.equal(parseFlags(['-h'], schema).help, true);
    assert.throws(() => parseFlags(['--taks', 'x'], schema), /--taks: unknown flag \(did you mean --task\?/);
    assert.equal(editDistance('taks', 'task'), 2);
    assert.equal(nearest('zzzzzz', ['task']), undefined);
  });
});

describe('metaguard command line', () => {
  it('-h works for every command and `help CMD` shows that command\'s help', async () => {
    for (const cmd of ['evaluate', 'worker', 'queue', 'demo', 'bench']) {
      const r = await runCli([cmd, '-h']);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, new RegExp(`Usage: metaguard ${cmd}`));
    }
    const r = await runCli(['help', 'worker']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /Usage: metaguard worker/);
  });

  it('evaluate accepts --min-delta -0.01 and runs the guides\' development config unchanged', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'mg-cwd-'));
    const r = await runCli(['evaluate', '--config', file(devToml), '--task', 'top_k', '--n', '40', '--min-delta', '-0.01'], { cwd, timeoutMs: 120_000 });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /ADOPTED/);
  });

  it('an unknown task lists the built-ins; a typo names the nearest', async () => {
    const r = await runCli(['evaluate', '--task', 'top-k']);
    assert.equal(r.code, 2, show(r));
    assert.equal(errLines(r).length, 1, show(r));
    assert.match(r.stderr, /did you mean top_k\? built-in tasks: top_k, median/);
  });

  it('worker and queue without a queue config exit 78 and 2 naming METAGUARD_QUEUE_CONFIG; a memory worker is refused', async () => {
    const w = await runCli(['worker']);
    assert.equal(w.code, 78, show(w));
    assert.match(w.stderr, /METAGUARD_QUEUE_CONFIG: is not set/);
    const q = await runCli(['queue', 'stats']);
    assert.equal(q.code, 2, show(q));
    assert.match(q.stderr, /METAGUARD_QUEUE_CONFIG: is not set/);
    const m = await runCli(['worker', '--backend', 'memory']);
    assert.equal(m.code, 78, show(m));
    assert.match(m.stderr, /--backend: memory is the in-process queue/);
  });

  it('worker reads [queue] and [logging] from --config, naming the file and key when a value is bad', async () => {
    const memory = await runCli(['worker', '--config', file('[queue]\nconfig = \'{"backend":"memory"}\'\n')]);
    assert.equal(memory.code, 78, show(memory));
    assert.match(memory.stderr, /queue-config\.backend: memory is the in-process queue/);
    const bad = file('[queue]\nbackend = "redis"\n[logging]\nlevel = "loud"\n');
    const r = await runCli(['worker'], { env: { METAGUARD_CONFIG: bad } });
    assert.equal(r.code, 78, show(r));
    assert.equal(errLines(r).length, 1, show(r));
    assert.match(r.stderr, /config .*: logging\.level: must be one of debug, info, warn, error/);
  });
});

describe('operator commands against redis-server', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis({ appendonly: false });
  });
  after(async () => {
    await redis?.stop();
  });

  it('dlq retry of an unknown ID exits 1 naming it; dlq purge --yes purges without asking; queue stats reads a [queue] table', async () => {
    const config = file(`[queue]\nbackend = "redis"\nqueue = "cfgtest"\n[queue.connection]\nport = "\${MG_TEST_REDIS_PORT}"\n`);
    const env = { MG_TEST_REDIS_PORT: String(redis.port) };
    const retry = await runCli(['queue', 'dlq', 'retry', 'nosuchid', '--config', config], { env });
    assert.equal(retry.code, 1, show(retry));
    assert.match(retry.stderr, /no dead-lettered batch with ID "nosuchid"/);
    const purge = await runCli(['queue', 'dlq', 'purge', '--yes', '--config', config], { env });
    assert.equal(purge.code, 0, show(purge));
    assert.match(purge.stdout, /purged 0/);
    const stats = await runCli(['queue', 'stats', '--json', '--config', config], { env });
    assert.equal(stats.code, 0, show(stats));
    const s = JSON.parse(stats.stdout) as Record<string, unknown>;
    assert.equal(s.queue, 'cfgtest');
    assert.equal(s.dead_letter_batches, 0);
    assert.ok('inflight_batches' in s && !('inflight' in s), 'batch counts are named as batches');
  });
});

describe('dlq purge on a terminal', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis({ appendonly: false });
  });
  after(async () => {
    await redis?.stop();
  });

  it('asks before purging; "n" keeps the dead letters and exits 1, "y" purges them', { skip: spawnSync('script', ['--version']).error ? 'util-linux script(1) is needed for a pseudo-terminal (apt-get install bsdutils)' : false }, async () => {
    const qc = { backend: 'redis', queue: 'purgetest', connection: { port: redis.port } };
    const backend = await createBackend(validateQueueConfig(qc));
    await backend.connect();
    try {
      await backend.enqueue([{ id: 'dead-1', jobId: 'j', role: 'baseline', priority: 'normal', payload: new Uint8Array([1]) }]);
      assert.equal((await backend.claimBatches('w', 1, 60_000)).length, 1);
      await backend.deadLetter('w', 'dead-1', wireError('MG_ERR_MALFORMED_BATCH', 'test'));
      assert.equal((await backend.stats()).dead, 1);
      const root = fileURLToPath(new URL('..', import.meta.url));
      const cli = `${JSON.stringify(process.execPath)} --import tsx ${JSON.stringify(join(root, 'src/cli/run.ts'))} queue dlq purge --queue-config '${JSON.stringify(qc)}'`;
      // script(1) gives the CLI a pseudo-terminal; the answer arrives on it as typed input.
      const onTerminal = async (answer: string) => spawnSync('script', ['-qec', `${cli}; echo "exit=$?"`, '/dev/null'], { cwd: root, input: `${answer}\n`, encoding: 'utf8', timeout: 60_000 }).stdout;
      const declined = await onTerminal('n');
      assert.match(declined, /purge 1 dead-lettered batch of queue purgetest \(redis\)\? \[y\/N\]/);
      assert.match(declined, /not confirmed; nothing purged/);
      assert.match(declined, /exit=1/);
      assert.equal((await backend.stats()).dead, 1, 'declined: kept');
      const confirmed = await onTerminal('y');
      assert.match(confirmed, /purged 1 dead-lettered batch/);
      assert.match(confirmed, /exit=0/);
      assert.equal((await backend.stats()).dead, 0, 'confirmed: purged');
    } finally {
      await backend.close();
    }
  });
});

describe('npm run install-service -- --prefix', () => {
  it('creates the prefix folder when it does not exist', () => {
    const root = fileURLToPath(new URL('..', import.meta.url));
    const prefix = join(mkdtempSync(join(tmpdir(), 'mg-prefix-')), 'not', 'yet');
    const r = spawnSync(process.execPath, [join(root, 'scripts/install-systemd.mjs'), '--prefix', prefix], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(join(prefix, 'etc/systemd/system/metaguard-worker@.service')));
    assert.ok(existsSync(join(prefix, 'etc/metaguard/default.env')));
  });
});
