/**
 * The Redis backend on a Redis Cluster (queue config `cluster_nodes`): config validation, the
 * operator commands (`queue stats`, `queue dlq …`, `bench`) on a cluster, and a master failover in
 * the middle of an evaluation. One cluster of 3 masters + 3 replicas (test/helpers/redis-cluster.ts)
 * serves the whole file and is stopped at the end; the failover test runs last because it kills a
 * master.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { validateQueueConfig } from '../src/options/queue.ts';
import { RedisBackend } from '../src/queue/redis/backend.ts';
import { shardQueueName } from '../src/queue/redis/sharded.ts';
import { startRedisCluster, type RedisCluster } from './helpers/redis-cluster.ts';
import { assertSameVerdict, fixture, killAllWorkers, localReport, queueReport, spawnWorker, type RunOptions } from './helpers/queue-harness.ts';
import { runCli } from './helpers/run-cli.ts';
import { wireError } from '../src/errors.ts';
import { until } from './helpers/poll.ts';

const skip = false; // startRedisCluster() fails naming the packages when redis-server or redis-cli is missing

describe('queue config cluster_nodes', () => {
  const base = { backend: 'redis', queue: 'q' };
  const fails = (extra: object, field: RegExp) =>
    assert.throws(
      () => validateQueueConfig({ ...base, ...extra }),
      (err: { code?: string; message?: string }) => err.code === 'MG_ERR_INVALID_OPTION' && field.test(err.message ?? ''),
    );

  it('takes a list or a comma-separated string of host:port seeds', () => {
    assert.deepEqual(validateQueueConfig({ ...base, cluster_nodes: ['10.0.0.1:7000', 'redis-b:7001'] }).cluster_nodes, [
      { host: '10.0.0.1', port: 7000 },
      { host: 'redis-b', port: 7001 },
    ]);
    assert.deepEqual(validateQueueConfig({ ...base, cluster_nodes: 'a:1, b:2' }).cluster_nodes, [
      { host: 'a', port: 1 },
      { host: 'b', port: 2 },
    ]);
    assert.deepEqual(validateQueueConfig({ ...base, cluster_nodes: '["[::1]:7000"]' }).cluster_nodes, [{ host: '::1', port: 7000 }]);
    // Credentials and TLS come from connection.
    const c = validateQueueConfig({ ...base, cluster_nodes: ['a:1'], connection: { password: 'pw', ssl: true } });
    assert.equal(c.connection?.password, 'pw');
    assert.equal(c.connection?.ssl, true);
  });

  it('names the field and the reason for a bad seed list', () => {
    fails({ cluster_nodes: [] }, /^queue-config\.cluster_nodes: must be a non-empty list/);
    fails({ cluster_nodes: 'nohost' }, /^queue-config\.cluster_nodes\[0\]: must be "host:port"/);
    fails({ cluster_nodes: ['a:1', 'b:70000'] }, /^queue-config\.cluster_nodes\[1\]: .*port 1-65535/);
    fails({ cluster_nodes: [7000] }, /^queue-config\.cluster_nodes\[0\]: /);
    fails({ cluster_nodes: { a: 1 } }, /^queue-config\.cluster_nodes: /);
  });

  it('refuses what a cluster cannot honour beside it', () => {
    fails({ cluster_nodes: ['a:1'], url: 'redis://x:1' }, /^queue-config\.url: cannot be combined with cluster_nodes/);
    fails({ cluster_nodes: ['a:1'], connection: { host: 'x' } }, /^queue-config\.connection\.host: cannot be combined/);
    fails({ cluster_nodes: ['a:1'], connection: { port: 1 } }, /^queue-config\.connection\.port: cannot be combined/);
    fails({ cluster_nodes: ['a:1'], connection: { db: 2 } }, /^queue-config\.connection\.db: must be 0 with cluster_nodes/);
    assert.throws(() => validateQueueConfig({ backend: 'kafka', bootstrap_servers: 'k:9092', cluster_nodes: ['a:1'] }), /cluster_nodes: is a redis key, but backend is kafka/);
  });
});

describe('shard queue names', () => {
  it('put shard i of n in the i-th of n equal slot ranges, the same in every process', () => {
    for (const n of [2, 3, 5]) {
      const names = Array.from({ length: n }, (_, i) => shardQueueName('metaguard', i, n));
      assert.equal(new Set(names).size, n);
      assert.deepEqual(names, Array.from({ length: n }, (_, i) => shardQueueName('metaguard', i, n)));
      for (const [i, name] of names.entries()) assert.match(name, /^metaguard\.\d+$/, `shard ${i}`);
    }
    assert.throws(() => validateQueueConfig({ backend: 'redis', shards: 0 }), /queue-config\.shards: must be at least 1/);
    assert.throws(() => validateQueueConfig({ backend: 'memory', shards: 2 }), /queue-config\.shards: is a redis key/);
  });
});

const slow: RunOptions = { task: fixture('slow/task.mjs'), baseline: fixture('slow/baseline.mjs'), candidate: fixture('slow/candidate.mjs'), n: 120 };

describe('Redis backend on a cluster of 3 masters + 3 replicas', { skip, concurrency: false }, () => {
  let cluster: RedisCluster;

  before(async () => {
    cluster = await startRedisCluster({ masters: 3, nodeTimeoutMs: 1500 });
  });
  after(async () => {
    killAllWorkers();
    await cluster?.stop();
  });

  const config = (extra: object = {}) => ({
    backend: 'redis',
    cluster_nodes: cluster.nodes,
    queue: `t_${randomUUID().slice(0, 8)}`,
    lease_seconds: 2,
    heartbeat_check_interval: 0.25,
    heartbeat_timeout: 3,
    batch_size: 5,
    ...extra,
  });

  it('queue stats and the dlq commands work on the cluster', async () => {
    const qc = config({ strict_priority: true });
    const b = new RedisBackend(validateQueueConfig(qc));
    await b.connect();
    try {
      const payload = Buffer.from([1, 2, 3]);
      await b.enqueue([
        { id: 'd1', jobId: 'j', role: 'baseline', priority: 'normal', payload },
        { id: 'd2', jobId: 'j', role: 'candidate', priority: 'high', payload },
        { id: 'p1', jobId: 'j', role: 'baseline', priority: 'low', payload },
      ]);
      const claims = await b.claimBatches('w1', 2, 10_000);
      assert.deepEqual(claims.map((c) => c.ok && c.batch.id).sort(), ['d1', 'd2']);
      await b.deadLetter('w1', 'd1', wireError('MG_ERR_MALFORMED_BATCH', 'poison one'));
      await b.deadLetter('w1', 'd2', wireError('MG_ERR_CODEC', 'poison two'));
    } finally {
      await b.close();
    }
    const env = { METAGUARD_QUEUE_CONFIG: JSON.stringify(qc) };
    const stats = await runCli(['queue', 'stats', '--json'], { env });
    assert.equal(stats.code, 0, stats.stderr);
    const s = JSON.parse(stats.stdout) as { pending_batches: Record<string, number>; dead_letter_batches: number; batches_dispatched_total: number };
    assert.equal(s.pending_batches.low, 1);
    assert.equal(s.dead_letter_batches, 2);
    assert.equal(s.batches_dispatched_total, 3);

    const list = await runCli(['queue', 'dlq', 'list', '--json'], { env });
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual((JSON.parse(list.stdout) as { id: string; code: string; reason: string; retryable: boolean }[]).map((d) => [d.id, d.code, d.reason, d.retryable]).sort(), [
      ['d1', 'MG_ERR_MALFORMED_BATCH', 'poison one', false],
      ['d2', 'MG_ERR_CODEC', 'poison two', false],
    ]);
    const retry = await runCli(['queue', 'dlq', 'retry', 'd1', '--json'], { env });
    assert.equal(retry.code, 0, retry.stderr);
    assert.deepEqual(JSON.parse(retry.stdout), { retried: 1 });
    const purge = await runCli(['queue', 'dlq', 'purge', '--yes', '--json'], { env });
    assert.equal(purge.code, 0, purge.stderr);
    assert.deepEqual(JSON.parse(purge.stdout), { purged: 1 });
    const after = JSON.parse((await runCli(['queue', 'stats', '--json'], { env })).stdout) as { pending_batches: Record<string, number>; dead_letter_batches: number };
    assert.equal(after.dead_letter_batches, 0);
    assert.equal(after.pending_batches.normal, 1, 'the retried batch is pending again');
  });

  it('metaguard bench sweeps against the cluster with a worker on it', async () => {
    const qc = config({ batch_size: undefined });
    delete (qc as Record<string, unknown>).batch_size;
    const w = spawnWorker(qc, { args: ['--threads', '1'] });
    const probe = new RedisBackend(validateQueueConfig(qc));
    try {
      await probe.connect();
      await until('the worker heartbeat on the cluster', async () => (await probe.activeWorkers()).length === 1, 30_000);
      const r = await runCli(['bench', '--json', '--skip-codec', '--n', '200', '--sizes', '20', '--queue-config', JSON.stringify(qc)], { timeoutMs: 120_000 });
      assert.equal(r.code, 0, `${r.stderr}\n${w.output()}`);
      const out = JSON.parse(r.stdout) as { sweep: { batch_size: number; cases_per_sec: number }[]; recommended_batch_size: number };
      assert.deepEqual(out.sweep.map((s) => s.batch_size), [20]);
      assert.ok(out.sweep[0].cases_per_sec > 0);
    } finally {
      await probe.close();
      w.child.kill('SIGTERM');
      await w.exited;
    }
  });

  it('shards: 3 spreads one evaluation over three masters; workers consume from all; the report equals a local run', async () => {
    const sharded: RunOptions = { ...slow, n: 60 };
    const expected = await localReport(sharded);
    const qc = config({ shards: 3 });
    const names = [0, 1, 2].map((i) => shardQueueName(qc.queue, i, 3));
    const masters = await Promise.all(names.map((q) => cluster.masterOf(`mg:{${q}}:x`)));
    assert.equal(new Set(masters).size, 3, `one shard per master: ${names.join(', ')} on ${masters.join(', ')}`);
    const a = spawnWorker(qc, { args: ['--threads', '1'] });
    const b = spawnWorker(qc, { args: ['--threads', '1'] });
    try {
      let progress = 0;
      const report = await Promise.race([queueReport(sharded, qc, { onProgress: (d) => (progress = d) }), sleep(60_000, undefined, { ref: false })]);
      if (!report) {
        const dump: string[] = [];
        for (const q of names) {
          const shard = new RedisBackend(validateQueueConfig({ ...qc, shards: 1, queue: q }));
          await shard.connect();
          dump.push(`${q}: ${JSON.stringify({ ...(await shard.stats()), workers: undefined })}`);
          await shard.close();
        }
        assert.fail(`no report within 60 s (${progress} of ${2 * sharded.n} cases)\n${dump.join('\n')}\nA: ${a.output().slice(-2500)}\nB: ${b.output().slice(-2500)}`);
      }
      assertSameVerdict(report, expected);
      // Every shard carried part of the evaluation.
      for (const q of names) {
        const shard = new RedisBackend(validateQueueConfig({ ...qc, shards: 1, queue: q }));
        await shard.connect();
        const s = await shard.stats();
        await shard.close();
        assert.ok(s.completed > 0, `shard ${q} completed ${s.completed} batches`);
      }
      const env = { METAGUARD_QUEUE_CONFIG: JSON.stringify(qc) };
      const stats = JSON.parse((await runCli(['queue', 'stats', '--json'], { env })).stdout) as { batches_dispatched_total: number; batches_completed_total: number };
      assert.equal(stats.batches_completed_total, stats.batches_dispatched_total);
      assert.equal(stats.batches_dispatched_total, (2 * sharded.n) / 5, 'the summed stats count every batch once');
    } finally {
      a.child.kill('SIGTERM');
      b.child.kill('SIGTERM');
      await Promise.all([a.exited, b.exited]);
    }
  });

  it('kill -9 of the master holding the queue mid-run: its replica is promoted, every case is accounted once, the report equals a local run', async () => {
    const expected = await localReport(slow);
    const qc = config();
    const slotKey = `mg:{${qc.queue}}:inflight`;
    const master = await cluster.masterOf(slotKey);
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    let killing: Promise<void> | undefined;
    const report = await queueReport(slow, qc, {
      onProgress: (done, total) => {
        if (!killing && done > total * 0.3) killing = cluster.kill9(master);
      },
    });
    assert.ok(killing, 'the master was killed mid-run');
    await killing;
    const promoted = await cluster.awaitFailover(slotKey, master);
    assert.notEqual(promoted, master, 'a replica now serves the queue');
    assert.equal(report.baseline.total, slow.n);
    assert.equal(report.candidate.total, slow.n);
    assertSameVerdict(report, expected);
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  });

  // The coordinator's lost-state check (outstanding batches that no longer exist are republished)
  // covers what asynchronous replication loses in a failover.
  it('writes acknowledged by the master but not yet replicated vanish in the failover: the coordinator notices and republishes them', async () => {
    // More batches than the coordinator keeps outstanding (512), so that it is still enqueueing when
    // the replica falls behind: those enqueues are acknowledged by the master and then lost.
    const many: RunOptions = { ...slow, n: 400 };
    const expected = await localReport(many);
    // A queue on a master that still has a replica (the test before killed one master for good).
    let qc = config({ batch_size: 1 });
    let slotKey = '';
    let master = 0;
    let replica: number | undefined;
    for (let i = 0; i < 30 && replica === undefined; i++) {
      qc = config({ batch_size: 1 });
      slotKey = `mg:{${qc.queue}}:inflight`;
      master = await cluster.masterOf(slotKey);
      [replica] = await cluster.replicasOf(master);
    }
    assert.ok(replica, 'a master with a replica serves the queue');
    const w = spawnWorker(qc, { args: ['--threads', '2'] });
    let failover: Promise<void> | undefined;
    let lastDone = 0;
    let total = 2 * many.n;
    const run = queueReport(many, qc, {
      onProgress: (done, all) => {
        lastDone = done;
        total = all;
        if (!failover && done > all * 0.2) {
          failover = (async () => {
            // The replica is frozen and its replication link cut (what was already sent sits in its
            // socket buffer and is applied on thaw), the coordinator and the worker go on writing to
            // the master (enqueues, claims, completions), then the master dies: the replica is
            // promoted without those writes.
            cluster.signal(replica, 'SIGSTOP');
            await cluster.dropReplicaLinks(master);
            await sleep(800);
            await cluster.kill9(master);
            cluster.signal(replica, 'SIGCONT');
          })();
        }
      },
    });
    const outcome = await Promise.race([run.then((r) => ({ report: r })), sleep(60_000, undefined, { ref: false }).then(() => ({ report: undefined }))]);
    assert.ok(failover, 'the failover happened mid-run');
    await failover;
    assert.equal(await cluster.awaitFailover(slotKey, master), replica, 'the frozen replica was promoted');
    assert.ok(outcome.report, `the evaluation did not finish within 60 s of the failover: ${total - lastDone} of ${total} cases never came back (writes lost with the master)`);
    assertSameVerdict(outcome.report, expected);
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0, w.output());
  });
});
