/**
 * One contract, every backend: the seam of `src/queue/types.ts` exercised through its interfaces only
 * (the one exception is planting garbage on a pending list, which needs a hook), one section per
 * concern: connection, work queue, job store, worker registry, queue admin.
 *
 * Backends differ in what they promise, and each declares it in `capabilities` (one object per
 * concern, named after the semantics, not the backend). A test that depends on a capability is gated
 * on the backend's own declaration and skipped, with a one-line reason derived from the capability,
 * for a backend that does not declare it; the connection section checks that every backend declares
 * each capability and has exactly the optional operations it declares. Kafka (src/queue/kafka/, see
 * its header comment), for one, has no per-batch lease (group membership is the lease), honours
 * priorities within a worker's fetch buffer only, keeps FIFO per partition only, and reports pending
 * as the group's consumer lag. Where a backend's observable behaviour differs but is still a
 * contract, the harness adapts the one test instead of forking it: `patienceMs` is how long claims,
 * result reads and stats may lag behind the writes that feed them (0 for memory and Redis: one call,
 * exactly as before; Kafka's claims return [] until the group has joined and the records have been
 * fetched, its readers consume topics asynchronously).
 *
 * Run: node --import tsx --test test/backend-conformance.test.ts
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import { Kafka, logLevel as kafkaLogLevel, Partitioners, type Producer } from 'kafkajs';
import { validateQueueConfig, type QueueConfig } from '../src/options/queue.js';
import type { Backend, BackendCapabilities, BatchMessage, ClaimedBatch, Claim, JobManifest, Priority, ResultEntry } from '../src/queue/types.js';
import { can, capabilityMismatches, declares, missingCapabilityReason, type CapabilityName, type Concern } from '../src/queue/capabilities.js';
import { wireError } from '../src/errors.js';
import { startKafkaMock, type KafkaMock } from './helpers/kafka-broker.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { startRedisCluster, type RedisCluster } from './helpers/redis-cluster.js';
import { startRabbit, type RabbitServer } from './helpers/rabbitmq-server.js';
import { startFauxqs, type Fauxqs } from './helpers/fauxqs-server.js';
import { until } from './helpers/poll.js';

interface Harness {
  name: 'memory' | 'redis' | 'redis-cluster' | 'kafka' | 'rabbitmq' | 'sqs';
  /**
   * The capabilities the backend declares (src/queue/types.ts), read from an unconnected instance
   * before the suite is laid out: tests gate on them. A connected backend must declare the same.
   */
  declared(): Promise<BackendCapabilities>;
  /**
   * How long (ms) claims, result reads and stats may lag behind the writes of the same backend. With 0
   * every poll below is a single call.
   */
  patienceMs: number;
  /** How many of this backend's tests run at once (each test has a queue of its own). */
  concurrency: number;
  /** A reason to skip the whole backend, or undefined. */
  skipReason(): string | undefined;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  /**
   * A connected backend on a fresh queue. The returned config is the one in force: a harness may raise
   * a setting its backend cannot honour (Kafka: heartbeat_timeout, its consumer session timeout).
   */
  create(overrides: Record<string, unknown>): Promise<{ backend: Backend; config: QueueConfig }>;
  /** Pushes a raw entry (not a batch id) where claims read from; false when the backend has no way. */
  injectGarbage?(backend: Backend, config: QueueConfig, raw: string, priority: Priority): Promise<boolean>;
}

/** Short settings keep the suite fast: leases of a few hundred ms, heartbeats timing out in 1 s. */
const fast = { lease_seconds: 0.3, heartbeat_timeout: 1, heartbeat_check_interval: 0.1, retry_base_ms: 10 };

/**
 * The lease of the lease tests. A lease a test expects to hold is at least 3× any gap between the
 * claim (or renewal) and the check, so a loaded machine does not expire it early; expiry is never
 * slept for: it is polled (`reclaimUntil`), for up to 10 leases.
 */
const LEASE_MS = 600;

/** Calls reclaimExpired until it has returned each of `ids` (requeued or dead-lettered); returns all it returned. */
async function reclaimUntil(b: Backend, ids: string[]): Promise<{ requeued: string[]; deadLettered: string[] }> {
  const out = { requeued: [] as string[], deadLettered: [] as string[] };
  await until(`the leases of ${ids.join(', ')} to expire and be reclaimed`, async () => {
    const r = await b.reclaimExpired();
    out.requeued.push(...r.requeued);
    out.deadLettered.push(...r.deadLettered);
    return ids.every((id) => out.requeued.includes(id) || out.deadLettered.includes(id));
  }, { timeoutMs: 10 * LEASE_MS, intervalMs: 25 });
  return out;
}

function queueName(): string {
  return `t_${randomUUID()}`;
}

const memoryHarness: Harness = {
  name: 'memory',
  async declared() {
    const { MemoryBackend } = await import('../src/queue/memory/backend.js');
    return new MemoryBackend(validateQueueConfig({ backend: 'memory', queue: queueName() })).capabilities;
  },
  patienceMs: 0,
  concurrency: 1,
  skipReason() {
    return existsSync(new URL('../src/queue/memory/backend.ts', import.meta.url)) ? undefined : 'src/queue/memory/backend.ts is not there yet';
  },
  async setup() {},
  async teardown() {},
  async create(overrides) {
    const { MemoryBackend } = await import('../src/queue/memory/backend.js');
    const config = validateQueueConfig({ backend: 'memory', queue: queueName(), ...fast, ...overrides });
    const backend: Backend = new MemoryBackend(config);
    await backend.connect();
    return { backend, config };
  },
  async injectGarbage(backend, _config, raw, priority) {
    const hook = (backend as unknown as { injectRaw?: (entry: string, priority: Priority) => void }).injectRaw;
    if (typeof hook !== 'function') return false;
    hook.call(backend, raw, priority);
    return true;
  },
};

let server: RedisServer | undefined;
let raw: Redis | undefined;

const redisHarness: Harness = {
  name: 'redis',
  async declared() {
    const { redisCapabilities } = await import('../src/queue/redis/backend.js');
    return redisCapabilities;
  },
  patienceMs: 0,
  concurrency: 1,
  skipReason() {
    return undefined; // startRedis() fails naming the package when redis-server is missing
  },
  async setup() {
    server = await startRedis({ appendonly: true });
    raw = new Redis({ port: server.port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: null });
    raw.on('error', () => {});
    await raw.connect();
  },
  async teardown() {
    raw?.disconnect();
    await server?.stop();
  },
  async create(overrides) {
    const { RedisBackend } = await import('../src/queue/redis/backend.js');
    const config = validateQueueConfig({ backend: 'redis', queue: queueName(), connection: { host: '127.0.0.1', port: server!.port }, ...fast, ...overrides });
    const backend: Backend = new RedisBackend(config, { clientName: 'conformance' });
    await backend.connect();
    return { backend, config };
  },
  async injectGarbage(_backend, config, entry, priority) {
    await raw!.lpush(`mg:{${config.queue}}:pending:${priority}`, entry);
    return true;
  },
};

let cluster: RedisCluster | undefined;
let clusterRaw: Cluster | undefined;

/** The same Redis backend through ioredis' Cluster client, on 3 masters + 3 replicas (queue config `cluster_nodes`). */
const redisClusterHarness: Harness = {
  name: 'redis-cluster',
  async declared() {
    const { redisCapabilities } = await import('../src/queue/redis/backend.js');
    return redisCapabilities;
  },
  patienceMs: 0,
  concurrency: 1,
  skipReason() {
    return undefined; // startRedisCluster() fails naming the package when redis-server or redis-cli is missing
  },
  async setup() {
    cluster = await startRedisCluster();
    clusterRaw = new Cluster(cluster.nodes.map((n) => ({ host: n.split(':')[0], port: Number(n.split(':')[1]) })), { lazyConnect: true });
    clusterRaw.on('error', () => {});
    await clusterRaw.connect();
  },
  async teardown() {
    clusterRaw?.disconnect();
    await cluster?.stop();
  },
  async create(overrides) {
    const { RedisBackend } = await import('../src/queue/redis/backend.js');
    const config = validateQueueConfig({ backend: 'redis', queue: queueName(), cluster_nodes: cluster!.nodes, ...fast, ...overrides });
    const backend: Backend = new RedisBackend(config, { clientName: 'conformance' });
    await backend.connect();
    return { backend, config };
  },
  async injectGarbage(_backend, config, entry, priority) {
    await clusterRaw!.lpush(`mg:{${config.queue}}:pending:${priority}`, entry);
    return true;
  },
};

let kafkaMock: KafkaMock | undefined;
let kafkaProducer: Producer | undefined;
/**
 * Kafka's heartbeat_timeout is its consumer session timeout. The mock broker holds a new group's first
 * join for 3 s (group.initial.rebalance.delay.ms) and drops members whose session ran out meanwhile, so
 * sessions must be longer than that (real brokers want at least 6 s).
 */
const KAFKA_MIN_HEARTBEAT_TIMEOUT = 4;

/** Rejects when `p` has not settled within `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

/**
 * Kafka (src/queue/kafka/): group membership is the lease (reclaimExpired is a no-op, a rebalance
 * redelivers a dead worker's records, so no lease expiry, enable_requeue or circuit breaker),
 * priorities and order hold within a worker's fetch buffer and a partition only, an append-only log
 * keeps a re-sent batch as a second record, and pending is the group's consumer lag: what its
 * declaration says, and why.
 */
const kafkaHarness: Harness = {
  name: 'kafka',
  async declared() {
    const { KafkaBackend } = await import('../src/queue/kafka/backend.js');
    return new KafkaBackend(validateQueueConfig({ backend: 'kafka', bootstrap_servers: '127.0.0.1:9', queue: queueName() })).capabilities;
  },
  patienceMs: 20_000,
  // Each test waits ~3 s for its consumer groups to join; the tests share nothing (a topic and a group each).
  concurrency: 16,
  skipReason() {
    return undefined; // startKafkaMock() fails naming the packages when the mock broker cannot be built
  },
  async setup() {
    kafkaMock = await startKafkaMock({ partitions: 4 }); // topics auto-create with 4 partitions
    kafkaProducer = new Kafka({ brokers: [kafkaMock.bootstrap], logLevel: kafkaLogLevel.NOTHING }).producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await kafkaProducer.connect();
  },
  async teardown() {
    try {
      await kafkaProducer?.disconnect();
    } finally {
      await kafkaMock?.stop();
    }
  },
  async create(overrides) {
    const { KafkaBackend } = await import('../src/queue/kafka/backend.js');
    const topic = queueName();
    const heartbeat = Math.max(KAFKA_MIN_HEARTBEAT_TIMEOUT, Number(overrides.heartbeat_timeout ?? 0));
    const config = validateQueueConfig({
      backend: 'kafka',
      bootstrap_servers: kafkaMock!.bootstrap,
      queue: topic,
      topic,
      consumer_group: `${topic}.workers`,
      ...fast,
      heartbeat_check_interval: 0.25, // also the consumers' long-poll: the latency of results and claims
      ...overrides,
      heartbeat_timeout: heartbeat,
    });
    let joined!: () => void;
    const assigned = new Promise<void>((resolve) => (joined = resolve));
    const backend = new KafkaBackend(config, { onEvent: (e) => e.type === 'assigned' && joined() });
    await backend.connect();
    try {
      // Start every consumer group now, side by side (each join takes ~3 s on the mock), rather than one
      // after the other as the test first claims, reads results, lists dead letters, reads heartbeats.
      await backend.claimBatches('warm-up', 0, 0); // starts the worker group member; claims nothing
      await backend.readResults('warm-up', '0', 0); // starts the results reader
      await Promise.all([within(assigned, 30_000, 'kafka worker group join'), backend.listDead(), backend.activeWorkers()]);
    } catch (err) {
      await backend.close();
      throw err;
    }
    return { backend, config };
  },
  async injectGarbage(_backend, config, entry) {
    // A record without headers: it has an id (its key) but no job, role or priority.
    await kafkaProducer!.send({ topic: config.topic!, acks: -1, messages: [{ key: entry, value: 'garbage' }] });
    return true;
  },
};

let rabbit: RabbitServer | undefined;

/**
 * RabbitMQ (src/queue/rabbitmq/): a dead connection's deliveries are requeued by the broker
 * (test/broker-faults.test.ts); a lease is ended by the process holding it, which republishes the
 * batch at the back of its queue (test/broker-backends.test.ts), so no other process reclaims it.
 */
const rabbitHarness: Harness = {
  name: 'rabbitmq',
  async declared() {
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.js');
    return new RabbitBackend(validateQueueConfig({ backend: 'rabbitmq', url: 'amqp://127.0.0.1:9', queue: queueName() })).capabilities;
  },
  patienceMs: 5000, // results and stream reads arrive through consumers, a moment after the write
  concurrency: 4,
  skipReason() {
    return undefined; // startRabbit() fails naming the package when rabbitmq-server is missing
  },
  async setup() {
    rabbit = await startRabbit();
  },
  async teardown() {
    await rabbit?.stop();
  },
  async create(overrides) {
    const { RabbitBackend } = await import('../src/queue/rabbitmq/backend.js');
    const config = validateQueueConfig({ backend: 'rabbitmq', url: rabbit!.url, queue: queueName(), ...fast, ...overrides });
    const backend: Backend = new RabbitBackend(config);
    await backend.connect();
    return { backend, config };
  },
  async injectGarbage(_backend, config, entry, priority) {
    const amqp = await import('amqplib');
    const conn = await amqp.connect(rabbit!.url);
    try {
      const ch = await conn.createConfirmChannel();
      ch.sendToQueue(`${config.queue}.${priority}`, Buffer.from('garbage'), { messageId: entry });
      await ch.waitForConfirms();
    } finally {
      await conn.close();
    }
    return true;
  },
};

let fauxqs: Fauxqs | undefined;
const SQS_MIN_HEARTBEAT_TIMEOUT = 3;

/**
 * SQS (src/queue/sqs/) against fauxqs: leases are visibility timeouts that SQS itself ends, and a
 * standard queue keeps no order and no priorities. (Results arriving in completion order is what
 * fauxqs does; real SQS may reorder them, which the coordinator does not mind.)
 */
const sqsHarness: Harness = {
  name: 'sqs',
  async declared() {
    const { SqsBackend } = await import('../src/queue/sqs/backend.js');
    return new SqsBackend(validateQueueConfig({ backend: 'sqs', endpoint_url: 'http://127.0.0.1:9', region: 'us-east-1', queue: `t${randomUUID().slice(0, 18)}` })).capabilities;
  },
  patienceMs: 5000, // a counted retry's delay is rounded up to whole seconds
  concurrency: 4,
  skipReason() {
    return undefined; // fauxqs is a devDependency: startFauxqs() fails naming it when npm ci was not run
  },
  async setup() {
    fauxqs = await startFauxqs();
  },
  async teardown() {
    await fauxqs?.stop();
  },
  async create(overrides) {
    const { SqsBackend } = await import('../src/queue/sqs/backend.js');
    // Heartbeats are queue tags written over HTTP: a timeout of a few seconds, not a fraction of one,
    // keeps the heartbeat test about heartbeats rather than about how loaded this machine is.
    const heartbeat = Math.max(SQS_MIN_HEARTBEAT_TIMEOUT, Number(overrides.heartbeat_timeout ?? 0));
    const config = validateQueueConfig({ backend: 'sqs', endpoint_url: fauxqs!.endpoint, region: 'us-east-1', aws_access_key_id: 'test', aws_secret_access_key: 'test', queue: `t${randomUUID().slice(0, 18)}`, ...fast, ...overrides, heartbeat_timeout: heartbeat });
    const backend: Backend = new SqsBackend(config);
    await backend.connect();
    return { backend, config };
  },
  async injectGarbage(backend, _config, entry) {
    const { SQSClient, SendMessageCommand } = await import('@aws-sdk/client-sqs');
    const client = new SQSClient({ endpoint: fauxqs!.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
    await client.send(new SendMessageCommand({ QueueUrl: (backend as unknown as { queueUrl: string }).queueUrl, MessageBody: entry }));
    client.destroy();
    return true;
  },
};

// ---------------------------------------------------------------------------------------------------

let seq = 0;
function batch(jobId: string, overrides: Partial<BatchMessage> = {}): BatchMessage {
  const n = seq++;
  // Bytes that UTF-8 decoding would mangle: a lone 0xff, NULs, an invalid continuation byte.
  const payload = Uint8Array.from([0xff, 0x00, 0xc3, 0x28, n & 0xff, (n >> 8) & 0xff, 0x80, 0x00]);
  return { id: `b${n}-${randomUUID().slice(0, 8)}`, jobId, role: n % 2 ? 'candidate' : 'baseline', priority: 'normal', payload, ...overrides };
}

function bytes(u: Uint8Array): number[] {
  return Array.from(u);
}

function oks(claims: Claim[]): ClaimedBatch[] {
  return claims.map((c) => {
    assert.ok(c.ok, `expected a batch, got ${JSON.stringify(c)}`);
    return c.batch;
  });
}

function manifest(jobId: string, createdAt: number): JobManifest {
  const ref = (n: string) => ({ sha256: 'a'.repeat(64), ext: '.mjs', name: n });
  return { jobId, task: ref('task.mjs'), implementations: { baseline: ref('base.mjs'), candidate: ref('cand.mjs') }, seed: 42, timeoutMs: 1000, memMb: 64, createdAt };
}

function conformance(h: Harness, caps: BackendCapabilities): void {
  const reason = h.skipReason();
  /** Skips a test for a backend that does not declare every one of `names` (one line: the first missing and what it means). */
  const needs = <C extends Concern>(concern: C, ...names: CapabilityName<C>[]) => {
    const missing = names.find((n) => !declares(caps, concern, n));
    return { skip: missing === undefined ? false : missingCapabilityReason(h.name, concern, missing) };
  };

  /**
   * Claims until `want` claims arrived or the harness's patience ran out (with patience 0: one call).
   * A backend may deliver what is pending over several calls (Kafka: after its group joined, as
   * records are fetched); none may deliver more than `max` in all.
   */
  async function claimUntil(b: Backend, workerId: string, max: number, leaseMs: number, want = max): Promise<Claim[]> {
    const deadline = Date.now() + h.patienceMs;
    const out: Claim[] = [];
    for (;;) {
      out.push(...(await b.claimBatches(workerId, max - out.length, leaseMs)));
      if (out.length >= Math.min(want, max) || Date.now() >= deadline) return out;
      await sleep(25);
    }
  }

  /**
   * Reads a job's results after `cursor` until `count` entries arrived (with patience 0: one read with
   * `blockMs`, as the coordinator does; later reads block up to 250 ms each).
   */
  async function readUntil(b: Backend, jobId: string, cursor: string, count: number, blockMs = 0): Promise<{ cursor: string; entries: ResultEntry[] }> {
    const deadline = Date.now() + h.patienceMs;
    const entries: ResultEntry[] = [];
    for (let first = true; ; first = false) {
      const r = await b.readResults(jobId, cursor, first ? blockMs : Math.max(0, Math.min(250, deadline - Date.now())));
      cursor = r.cursor;
      entries.push(...r.entries);
      if (entries.length >= count || Date.now() >= deadline) return { cursor, entries };
    }
  }

  async function readAll(b: Backend, jobId: string, count: number): Promise<ResultEntry[]> {
    return (await readUntil(b, jobId, '0', count)).entries;
  }

  // The concerns run one after the other; the tests within one run `h.concurrency` at a time.
  describe(`backend conformance: ${h.name}`, { skip: reason ?? false, concurrency: 1 }, () => {
    before(() => h.setup());
    after(() => h.teardown());

    async function withBackend(overrides: Record<string, unknown>, fn: (b: Backend, c: QueueConfig) => Promise<void>): Promise<void> {
      const { backend, config } = await h.create(overrides);
      try {
        await fn(backend, config);
      } finally {
        await backend.close();
      }
    }

    describe(`connection (kind, clock, close, and the capabilities it declares)`, { concurrency: h.concurrency }, () => {
      it('declares every capability, and exactly the optional operations it declares', () =>
        withBackend({}, async (b) => {
          assert.deepEqual(capabilityMismatches(b as unknown as Parameters<typeof capabilityMismatches>[0]), []);
          assert.deepEqual(b.capabilities, caps, 'the capabilities the suite gates on are the ones the connected backend declares');
        }));

      it('has a kind and a clock close to this machine\'s', () =>
        withBackend({}, async (b) => {
          assert.equal(b.kind, h.name === 'redis-cluster' ? 'redis' : h.name);
          const t = await b.now();
          assert.ok(Number.isFinite(t) && Math.abs(t - Date.now()) < 5000, `now() = ${t}`);
        }));

      it('close() makes a pending blocking read return promptly', async () => {
        const { backend } = await h.create({});
        const pending = backend.readResults(`job-${randomUUID()}`, '0', 5000);
        await sleep(100);
        // Measured from close() to the read's return: a polite QUIT that close() may still wait for is not the read's time.
        const t = Date.now();
        const closing = backend.close();
        const r = await pending;
        const took = Date.now() - t;
        await closing;
        await backend.close(); // idempotent
        assert.deepEqual(r.entries, []);
        assert.ok(took < 1500, `returned ${took} ms after close() (the read blocks for 5000 ms)`);
        await assert.rejects(backend.claimBatches('w1', 1, 1000), (err: { code?: string }) => typeof err.code === 'string' && err.code.startsWith('MG_ERR_BACKEND'));
      });
    });

    describe(`work queue (enqueue, claim, renew, complete, release, dead-letter, reclaim, results)`, { concurrency: h.concurrency }, () => {
      it('enqueues, claims and completes binary batches (FIFO within a priority where the backend keeps it)', () =>
        withBackend({}, async (b) => {
          const job = `job-${randomUUID()}`;
          const sent = [batch(job), batch(job, { mac: 'ab'.repeat(32) }), batch(job)];
          await b.enqueue(sent);
          const got = oks(await claimUntil(b, 'w1', 10, 5000, sent.length));
          if (caps.queue.fifo) assert.deepEqual(got.map((x) => x.id), sent.map((x) => x.id));
          else assert.deepEqual(got.map((x) => x.id).sort(), sent.map((x) => x.id).sort());
          for (const g of got) {
            const s = sent.find((x) => x.id === g.id)!;
            assert.equal(g.jobId, job);
            assert.equal(g.role, s.role);
            assert.equal(g.priority, 'normal');
            assert.equal(g.attempt, 1);
            assert.deepEqual(bytes(g.payload), bytes(s.payload));
            assert.equal(g.mac, s.mac);
          }
          // The claimer holds what it claimed; nobody else does; an empty list is a no-op.
          const ids = got.map((x) => x.id);
          assert.deepEqual(await b.renewLeases('w1', ids, 5000), []);
          assert.deepEqual(await b.renewLeases('w2', ids, 5000), ids);
          assert.deepEqual(await b.renewLeases('w1', [], 5000), []);
          const frame = Uint8Array.from([0, 0xff, 0xfe, 0x80, 0x0a]);
          for (const g of got) assert.equal(await b.completeBatch('w1', g, frame), true);
          const entries = await readAll(b, job, 3);
          assert.equal(entries.length, 3);
          for (const [i, e] of entries.entries()) {
            assert.equal(e.kind, 'results');
            if (e.kind !== 'results') continue;
            assert.equal(e.batchId, got[i].id, 'results in completion order');
            assert.equal(e.role, got[i].role);
            assert.equal(e.workerId, 'w1');
            assert.deepEqual(bytes(e.frame), bytes(frame));
          }
          assert.deepEqual(await b.claimBatches('w1', 10, 5000), []);
          const s = await until('3 batches completed', async () => {
            const x = await b.stats();
            return x.completed === 3 && x;
          }, h.patienceMs);
          assert.equal(s.inflight, 0);
          assert.equal(s.completed, 3);
          assert.equal(s.dispatched, 3);
        }));

      it('claims nothing from an empty queue (and nothing for max <= 0)', () =>
        withBackend({}, async (b) => {
          assert.deepEqual(await b.claimBatches('w1', 5, 1000), []);
          await b.enqueue([batch('j')]);
          assert.deepEqual(await b.claimBatches('w1', 0, 1000), []);
          assert.equal((await b.stats()).pending.normal, 1);
        }));

      it('strict priority claims critical, high, normal, low in that order', needs('queue', 'strictPriority'), () =>
        withBackend({ strict_priority: true }, async (b) => {
          const order: Priority[] = ['low', 'normal', 'high', 'critical', 'low', 'critical'];
          const sent = order.map((priority) => batch('j', { priority }));
          await b.enqueue(sent);
          const one = oks(await b.claimBatches('w1', 1, 5000));
          assert.equal(one[0].priority, 'critical');
          const rest = oks(await b.claimBatches('w1', 10, 5000));
          assert.deepEqual(rest.map((x) => x.priority), ['critical', 'high', 'normal', 'low', 'low']);
          assert.deepEqual([one[0].id, ...rest.map((x) => x.id)], [sent[3], sent[5], sent[2], sent[1], sent[0], sent[4]].map((x) => x.id));
        }));

      it('weighted priority favours heavy non-empty priorities and never starves on an empty one', needs('queue', 'weightedPriority'), () =>
        withBackend({ queue_weights: { critical: 100, low: 1 } }, async (b) => {
          // Only low is non-empty: the heavy (empty) critical must not block it.
          await b.enqueue([batch('j', { priority: 'low' })]);
          assert.equal(oks(await b.claimBatches('w1', 1, 5000))[0].priority, 'low');
          await b.enqueue([...Array.from({ length: 100 }, () => batch('j', { priority: 'critical' })), ...Array.from({ length: 100 }, () => batch('j', { priority: 'low' }))]);
          let critical = 0;
          for (let i = 0; i < 100; i++) if (oks(await b.claimBatches('w1', 1, 5000))[0].priority === 'critical') critical++;
          assert.ok(critical >= 90, `critical claimed first in ${critical}/100 tries (weights 100:1)`);
        }));

      it('weighted priority is random, not strict, when weights are equal', needs('queue', 'weightedPriority'), () =>
        withBackend({ queue_weights: { critical: 1, high: 1, normal: 1, low: 1 } }, async (b) => {
          await b.enqueue([...Array.from({ length: 60 }, () => batch('j', { priority: 'critical' })), ...Array.from({ length: 60 }, () => batch('j', { priority: 'low' }))]);
          const got = oks(await b.claimBatches('w1', 60, 5000));
          assert.equal(got.length, 60);
          const low = got.filter((x) => x.priority === 'low').length;
          assert.ok(low >= 10 && low <= 50, `low claimed ${low}/60 times with equal weights`);
        }));

      it('concurrent claimers never receive the same batch', () =>
        withBackend({}, async (b) => {
          const sent = Array.from({ length: 60 }, () => batch('j'));
          await b.enqueue(sent);
          const seen: string[] = [];
          const deadline = Date.now() + h.patienceMs;
          await Promise.all(
            Array.from({ length: 6 }, async (_, w) => {
              for (;;) {
                const got = oks(await b.claimBatches(`w${w}`, 4, 5000));
                if (got.length === 0) {
                  // Drained, or (a backend that delivers over time) nothing more within its patience.
                  if (seen.length >= sent.length || Date.now() >= deadline) return;
                  await sleep(25);
                  continue;
                }
                seen.push(...got.map((x) => x.id));
              }
            }),
          );
          assert.equal(seen.length, 60);
          assert.equal(new Set(seen).size, 60);
        }));

      it('renewed leases survive past their original deadline', needs('queue', 'leases'), () =>
        withBackend({}, async (b) => {
          const sent = [batch('j'), batch('j')];
          await b.enqueue(sent);
          const claimed = Date.now();
          const ids = oks(await b.claimBatches('w1', 2, LEASE_MS)).map((x) => x.id);
          // Renewed every sixth of a lease, until well past the first deadline.
          while (Date.now() - claimed < 1.5 * LEASE_MS) {
            await sleep(LEASE_MS / 6);
            assert.deepEqual(await b.renewLeases('w1', ids, LEASE_MS), []);
          }
          assert.deepEqual(await b.reclaimExpired(), { requeued: [], deadLettered: [] });
          assert.deepEqual(await b.claimBatches('w2', 5, 1000), []);
          assert.equal((await b.stats()).inflight, 2);
          // Ids the worker never held are reported lost; an empty list is a no-op.
          assert.deepEqual(await b.renewLeases('w2', ids, LEASE_MS), ids);
          assert.deepEqual(await b.renewLeases('w1', [], LEASE_MS), []);
          // Stop renewing: now they expire.
          const out = await reclaimUntil(b, ids);
          assert.deepEqual([...out.requeued].sort(), [...ids].sort());
        }));

      it('an unrenewed lease expires; reclaim requeues it with attempt + 1 for another worker', needs('queue', 'leases'), () =>
        withBackend({}, async (b) => {
          const sent = batch('j');
          await b.enqueue([sent, batch('j')]);
          const [first] = oks(await b.claimBatches('w1', 1, LEASE_MS));
          assert.equal(first.id, sent.id);
          assert.deepEqual((await b.reclaimExpired()).requeued, [], 'not expired yet');
          assert.deepEqual(await reclaimUntil(b, [sent.id]), { requeued: [sent.id], deadLettered: [] });
          // Requeued at the front of its priority: claimed before the batch that was waiting.
          const [again] = oks(await b.claimBatches('w2', 1, 5000));
          assert.equal(again.id, sent.id);
          assert.equal(again.attempt, 2);
          assert.deepEqual(bytes(again.payload), bytes(sent.payload));
          assert.deepEqual(await b.renewLeases('w1', [sent.id], 1000), [sent.id], 'w1 lost it');
          assert.deepEqual(await b.renewLeases('w2', [sent.id], 1000), []);
          assert.equal((await b.stats()).requeued, 1);
        }));

      it('completeBatch after a lost lease returns false, still publishes, and leaves the new owner alone', needs('queue', 'leases'), () =>
        withBackend({}, async (b) => {
          const job = `job-${randomUUID()}`;
          const sent = batch(job);
          await b.enqueue([sent]);
          const [mine] = oks(await b.claimBatches('w1', 1, LEASE_MS));
          await reclaimUntil(b, [mine.id]);
          const [theirs] = oks(await b.claimBatches('w2', 1, 5000));
          assert.equal(theirs.id, mine.id);
          assert.equal(await b.completeBatch('w1', mine, Uint8Array.from([1])), false);
          const first = await b.readResults(job, '0', 0);
          assert.equal(first.entries.length, 1);
          const e = first.entries[0];
          assert.ok(e.kind === 'results' && e.workerId === 'w1' && e.batchId === sent.id);
          assert.deepEqual(await b.renewLeases('w2', [sent.id], 5000), [], 'the new owner still holds it');
          assert.equal((await b.stats()).inflight, 1);
          assert.equal(await b.completeBatch('w2', theirs, Uint8Array.from([2])), true);
          const second = await b.readResults(job, first.cursor, 0);
          assert.equal(second.entries.length, 1);
          assert.ok(second.entries[0].kind === 'results' && second.entries[0].workerId === 'w2');
          const s = await b.stats();
          assert.equal(s.inflight, 0);
          assert.equal(s.completed, 1);
        }));

      it('an expired lease past max_requeue_attempts is dead-lettered with the reason and the job is told', needs('queue', 'leases'), () =>
        withBackend({ max_requeue_attempts: 1 }, async (b) => {
          const job = `job-${randomUUID()}`;
          await b.putJob(manifest(job, await b.now()));
          const sent = batch(job, { role: 'candidate' });
          await b.enqueue([sent]);
          const t0 = await b.now();
          assert.equal(oks(await b.claimBatches('w1', 1, LEASE_MS))[0].attempt, 1);
          assert.deepEqual(await reclaimUntil(b, [sent.id]), { requeued: [sent.id], deadLettered: [] });
          assert.equal(oks(await b.claimBatches('w2', 1, LEASE_MS))[0].attempt, 2);
          assert.deepEqual(await reclaimUntil(b, [sent.id]), { requeued: [], deadLettered: [sent.id] });

          const dead = await b.listDead();
          assert.equal(dead.length, 1);
          assert.equal(dead[0].id, sent.id);
          assert.equal(dead[0].jobId, job);
          assert.equal(dead[0].role, 'candidate');
          assert.equal(dead[0].attempts, 2);
          assert.equal(dead[0].error.code, 'MG_ERR_LEASE_EXPIRED');
          assert.match(dead[0].error.message, /lease expired/);
          assert.ok(dead[0].deadAt >= t0 - 1000 && dead[0].deadAt <= (await b.now()) + 1000, `deadAt ${dead[0].deadAt}`);
          const entries = await readAll(b, job, 1);
          assert.deepEqual(entries.map((e) => e.kind), ['dead']);
          assert.equal(entries[0].batchId, sent.id);
          assert.equal((await b.stats()).dead, 1);
          assert.deepEqual(await b.claimBatches('w3', 1, 1000), []);
          assert.equal(await b.retryDead(sent.id), 1);
          const [back] = oks(await b.claimBatches('w3', 1, 5000));
          assert.equal(back.attempt, 1, 'attempts reset by retryDead');
        }));

      it('enqueue is idempotent: a batch id already pending or in flight is not added again', needs('queue', 'idempotentEnqueue'), () =>
        withBackend({}, async (b) => {
          const job = `job-${randomUUID()}`;
          const [x, y] = [batch(job), batch(job)];
          await b.enqueue([x, y]);
          await b.enqueue([x, y]);
          const [c] = oks(await claimUntil(b, 'w1', 1, 5000));
          await b.enqueue([x, y]);
          const rest = oks(await b.claimBatches('w2', 10, 5000));
          assert.deepEqual([c.id, ...rest.map((r) => r.id)], [x.id, y.id]);
          assert.equal((await b.stats()).dispatched, 2);
        }));

      it('missingBatches names the batches neither pending, delayed nor in flight', needs('queue', 'lostBatchDetection'), () =>
        withBackend({}, async (b, config) => {
          assert.ok(can(b, 'lostBatchDetection'));
          const job = `job-${randomUUID()}`;
          await b.putJob(manifest(job, await b.now()));
          const [p, f, d, r] = [batch(job), batch(job), batch(job), batch(job)];
          await b.enqueue([f, d, r]);
          const claimed = oks(await claimUntil(b, 'w1', 3, 5000));
          assert.equal(claimed.length, 3);
          await b.enqueue([p]);
          await b.completeBatch('w1', claimed.find((c) => c.id === f.id)!, Uint8Array.from([1]));
          await b.deadLetter('w1', d.id, wireError('MG_ERR_MALFORMED_BATCH', 'gone'));
          await b.releaseBatch('w1', r.id, { delayMs: 60_000, countAttempt: true, error: wireError('MG_ERR_WORKER', 'later') });
          assert.ok(config.max_requeue_attempts >= 1);
          assert.deepEqual((await b.missingBatches([p.id, f.id, d.id, r.id, 'never-sent'])).sort(), [f.id, d.id, 'never-sent'].sort());
        }));

      it('with hmac_key, results entries and dead letters are signed for their job, batch and role', () =>
        withBackend({ hmac_key: 'conformance-key' }, async (b) => {
          const { verifyDead, verifyResults } = await import('../src/queue/messages.js');
          const job = `job-${randomUUID()}`;
          await b.putJob(manifest(job, await b.now()));
          const [x, y] = [batch(job, { role: 'baseline' }), batch(job, { role: 'candidate' })];
          await b.enqueue([x, y]);
          const got = oks(await claimUntil(b, 'w1', 2, 5000));
          const frame = Uint8Array.from([9, 8, 7]);
          await b.completeBatch('w1', got.find((g) => g.id === x.id)!, frame);
          await b.deadLetter('w1', y.id, wireError('MG_ERR_MALFORMED_BATCH', 'poison'));
          const entries = await readAll(b, job, 2);
          const results = entries.find((e) => e.kind === 'results');
          const dead = entries.find((e) => e.kind === 'dead');
          assert.ok(results && results.kind === 'results' && dead && dead.kind === 'dead', JSON.stringify(entries));
          assert.ok(verifyResults('conformance-key', { jobId: job, batchId: x.id, role: 'baseline', workerId: 'w1' }, results.frame, results.mac));
          assert.ok(!verifyResults('conformance-key', { jobId: job, batchId: x.id, role: 'candidate', workerId: 'w1' }, results.frame, results.mac), 'bound to the role');
          assert.ok(!verifyResults('other-key', { jobId: job, batchId: x.id, role: 'baseline', workerId: 'w1' }, results.frame, results.mac), 'bound to the key');
          assert.equal(dead.role, 'candidate');
          const poison = wireError('MG_ERR_MALFORMED_BATCH', 'poison');
          assert.deepEqual(dead.error, poison, 'the error crosses the backend as data: code, message, retryable');
          assert.ok(verifyDead('conformance-key', { jobId: job, batchId: y.id, role: 'candidate', error: poison }, dead.mac));
          assert.ok(!verifyDead('conformance-key', { jobId: job, batchId: x.id, role: 'candidate', error: poison }, dead.mac), 'bound to the batch');
          assert.ok(!verifyDead('conformance-key', { jobId: job, batchId: y.id, role: 'candidate', error: { ...poison, code: 'MG_ERR_WORKER' } }, dead.mac), 'bound to the code');
          assert.ok(!verifyDead('conformance-key', { jobId: job, batchId: y.id, role: 'candidate', error: { ...poison, retryable: true } }, dead.mac), 'bound to retryable');
        }));

      it('a stale deadLetter (from a worker whose lease was reclaimed) never loses the batch', needs('queue', 'leases'), () =>
        withBackend({}, async (b) => {
          const job = `job-${randomUUID()}`;
          await b.putJob(manifest(job, await b.now()));
          const a = batch(job);
          await b.enqueue([a]);
          oks(await b.claimBatches('w1', 1, LEASE_MS));
          assert.deepEqual((await reclaimUntil(b, [a.id])).requeued, [a.id]);
          // w1 wakes up after its lease was reclaimed and rejects the batch (say, a bad MAC).
          await b.deadLetter('w1', a.id, wireError('MG_ERR_MALFORMED_BATCH', 'stale verdict'));
          // Another worker drains the queue as the daemon does.
          let completed = false;
          for (const c of await b.claimBatches('w2', 5, 5000)) {
            if (!c.ok) await b.deadLetter('w2', c.id, c.error);
            else {
              assert.equal(c.batch.id, a.id);
              completed = await b.completeBatch('w2', c.batch, Uint8Array.from([1]));
            }
          }
          if (!completed) {
            // The stale verdict won: the DLQ must then still hold the batch with its payload.
            const dead = await b.listDead();
            assert.deepEqual(dead.map((d) => d.id), [a.id]);
            assert.equal(dead[0].jobId, job, `the dead-letter entry lost its batch: ${JSON.stringify(dead[0])}`);
            assert.equal(await b.retryDead(a.id), 1, 'the dead-lettered batch kept its payload');
            const [again] = oks(await b.claimBatches('w2', 1, 5000));
            assert.deepEqual(bytes(again.payload), bytes(a.payload));
          }
        }));

      it('enable_requeue: false dead-letters a batch on its first expired lease', needs('queue', 'leases'), () =>
        withBackend({ enable_requeue: false }, async (b) => {
          const sent = batch('j');
          await b.enqueue([sent]);
          oks(await b.claimBatches('w1', 1, LEASE_MS));
          assert.deepEqual(await reclaimUntil(b, [sent.id]), { requeued: [], deadLettered: [sent.id] });
          assert.equal((await b.listDead())[0].id, sent.id);
        }));

      it('releaseBatch countAttempt:false hands back at once, at the front, without counting', () =>
        withBackend({ max_requeue_attempts: 0 }, async (b) => {
          const a = batch('j');
          const c = batch('j');
          await b.enqueue([a, c]);
          const [got] = oks(await claimUntil(b, 'w1', 1, 5000));
          if (caps.queue.fifo) assert.equal(got.id, a.id);
          await b.releaseBatch('w1', got.id, { delayMs: 60_000, countAttempt: false, error: wireError('MG_ERR_WORKER', 'draining') });
          const [again] = oks(await claimUntil(b, 'w2', 1, 5000));
          assert.equal(again.id, got.id, 'handed back to the front, ignoring delayMs');
          assert.equal(again.attempt, 1, 'a hand-back does not count as an attempt');
          // Releasing a batch one does not hold changes nothing.
          await b.releaseBatch('w1', got.id, { delayMs: 0, countAttempt: false, error: wireError('MG_ERR_WORKER', 'not mine') });
          assert.deepEqual(await b.renewLeases('w2', [got.id], 5000), []);
          const s = await b.stats();
          assert.equal(s.inflight, 1);
          // Waiting: the other batch (plus the claimed one where pending counts what is not yet finished).
          assert.equal(s.pending.normal, caps.admin.pendingExcludesClaimed ? 1 : 2);
          assert.equal(s.dead, 0);
        }));

      it('releaseBatch countAttempt:true waits delayMs, then is claimable with attempt + 1', () =>
        withBackend({}, async (b) => {
          const a = batch('j');
          await b.enqueue([a]);
          oks(await claimUntil(b, 'w1', 1, 5000));
          // A delay well above scheduling noise on a loaded machine: the checks below run ~200 ms in.
          const releasing = Date.now();
          await b.releaseBatch('w1', a.id, { delayMs: 2000, countAttempt: true, error: wireError('MG_ERR_WORKER', 'retry') });
          let s = await b.stats();
          assert.equal(s.inflight, 0);
          if (caps.admin.delayedStats) assert.equal(s.delayed, 1);
          assert.equal(s.requeued, 1);
          assert.deepEqual(await b.claimBatches('w1', 1, 5000), [], 'not before the delay');
          await sleep(200);
          assert.deepEqual(await b.claimBatches('w2', 1, 5000), [], 'still not before the delay');
          const [again] = oks(
            await until('the released batch to be claimable again', async () => {
              const c = await b.claimBatches('w2', 1, 5000);
              return c.length > 0 && c;
            }, { timeoutMs: 20_000 + h.patienceMs }),
          );
          assert.ok(Date.now() - releasing >= 2000, `claimable ${Date.now() - releasing} ms after a release with delayMs 2000`);
          assert.equal(again.id, a.id);
          assert.equal(again.attempt, 2);
          s = await b.stats();
          assert.equal(s.delayed, 0);
          assert.equal(s.inflight, 1);
        }));

      it('releaseBatch countAttempt:true past max_requeue_attempts dead-letters with the reason', () =>
        withBackend({ max_requeue_attempts: 1 }, async (b) => {
          const job = `job-${randomUUID()}`;
          await b.putJob(manifest(job, await b.now()));
          const a = batch(job);
          await b.enqueue([a]);
          oks(await claimUntil(b, 'w1', 1, 5000));
          await b.releaseBatch('w1', a.id, { delayMs: 0, countAttempt: true, error: wireError('MG_ERR_WORKER', 'worker crashed') });
          const [second] = oks(await claimUntil(b, 'w1', 1, 5000));
          assert.equal(second.attempt, 2);
          await b.releaseBatch('w1', a.id, { delayMs: 0, countAttempt: true, error: wireError('MG_ERR_WORKER', 'worker crashed') });
          const dead = await b.listDead();
          assert.equal(dead.length, 1);
          assert.equal(dead[0].id, a.id);
          assert.equal(dead[0].error.code, 'MG_ERR_WORKER', 'a retry past its attempts keeps the code it was retried with');
          assert.match(dead[0].error.message, /worker crashed/);
          const entries = await readAll(b, job, 1);
          assert.equal(entries.at(-1)?.kind, 'dead');
          assert.deepEqual(await b.claimBatches('w1', 1, 5000), []);
        }));

      it('garbage on a pending list comes back as {ok:false} and deadLetter records it', { skip: h.injectGarbage ? false : `${h.name}: the harness cannot plant garbage` }, () =>
        withBackend({}, async (b, config) => {
          const good = batch('j');
          await b.enqueue([good]);
          assert.ok(await h.injectGarbage!(b, config, 'not-a-batch-id', 'normal'), `${h.name}: the garbage was not planted`);
          const claims = await claimUntil(b, 'w1', 5, 5000, 2);
          assert.equal(claims.length, 2);
          const bad = claims.find((c) => !c.ok);
          assert.ok(bad && !bad.ok);
          assert.equal(bad.id, 'not-a-batch-id');
          assert.ok(bad.error.message.length > 0);
          assert.deepEqual([bad.error.code, bad.error.retryable], ['MG_ERR_MALFORMED_BATCH', false], 'a claim that is not a batch says so with a code');
          assert.ok(claims.some((c) => c.ok && c.batch.id === good.id));
          await b.deadLetter('w1', bad.id, bad.error);
          const dead = await b.listDead();
          assert.equal(dead.length, 1);
          assert.equal(dead[0].id, 'not-a-batch-id');
          assert.equal(dead[0].error.message, bad.error.message);
          assert.equal(dead[0].jobId, undefined);
          const s = await b.stats();
          assert.equal(s.inflight, 1, 'only the good batch is in flight');
          assert.equal(s.dead, 1);
        }));

      it('readResults blocks up to blockMs, wakes on new entries, and resumes from its cursor', () =>
        withBackend({}, async (b) => {
          const job = `job-${randomUUID()}`;
          let t = Date.now();
          const empty = await b.readResults(job, '0', 300);
          assert.deepEqual(empty.entries, []);
          assert.equal(empty.cursor, '0');
          assert.ok(Date.now() - t >= 250, `returned after ${Date.now() - t} ms, expected ~300`);

          const sent = Array.from({ length: 5 }, () => batch(job));
          await b.enqueue(sent);
          const claimed = oks(await claimUntil(b, 'w1', 5, 5000));
          assert.equal(claimed.length, 5);
          t = Date.now();
          const waiting = b.readResults(job, '0', 3000);
          await sleep(100);
          // The main connection is not stalled by the blocking read.
          const t1 = Date.now();
          await b.now();
          await b.stats();
          assert.ok(Date.now() - t1 < 500, 'other calls proceed during a blocking read');
          await b.completeBatch('w1', claimed[0], Uint8Array.from([0]));
          const woke = await waiting;
          assert.ok(Date.now() - t < 1500, `woke after ${Date.now() - t} ms`);
          assert.deepEqual(woke.entries.map((e) => e.batchId), [claimed[0].id]);

          for (const c of claimed.slice(1, 3)) await b.completeBatch('w1', c, Uint8Array.from([1]));
          const mid = await readUntil(b, job, woke.cursor, 2);
          assert.deepEqual(mid.entries.map((e) => e.batchId), [claimed[1].id, claimed[2].id]);
          for (const c of claimed.slice(3)) await b.completeBatch('w1', c, Uint8Array.from([2]));
          const end = await readUntil(b, job, mid.cursor, 2, 200);
          assert.deepEqual(end.entries.map((e) => e.batchId), [claimed[3].id, claimed[4].id]);
          const none = await b.readResults(job, end.cursor, 0);
          assert.deepEqual(none.entries, []);
          assert.equal(none.cursor, end.cursor);
          const all = await b.readResults(job, '0', 0);
          assert.deepEqual(all.entries.map((e) => e.batchId), claimed.map((x) => x.id));
          if (caps.queue.fifo) assert.deepEqual(claimed.map((x) => x.id), sent.map((x) => x.id));
        }));

      it('the circuit breaker stops a worker that lost circuit_breaker_threshold leases, for heartbeat_timeout', needs('queue', 'circuitBreaker'), () =>
        withBackend({ circuit_breaker_threshold: 2, heartbeat_timeout: 2 }, async (b, config) => {
          await b.enqueue([batch('j'), batch('j'), batch('j')]);
          const one = oks(await b.claimBatches('w1', 1, LEASE_MS)).map((x) => x.id);
          assert.equal(one.length, 1);
          assert.equal((await reclaimUntil(b, one)).requeued.length, 1);
          // One strike: still allowed.
          const two = oks(await b.claimBatches('w1', 2, LEASE_MS)).map((x) => x.id);
          assert.equal(two.length, 2);
          assert.equal((await reclaimUntil(b, two)).requeued.length, 2);
          const opened = Date.now();
          // Checked within a small part of heartbeat_timeout (2 s): open, for this worker only.
          assert.deepEqual(await b.claimBatches('w1', 5, 5000), [], 'circuit open');
          assert.equal(oks(await b.claimBatches('w2', 1, 5000)).length, 1, 'other workers still claim');
          const back = await until('the circuit to close', async () => {
            const c = await b.claimBatches('w1', 5, 5000);
            return c.length > 0 && c;
          }, { timeoutMs: 10 * config.heartbeat_timeout * 1000, intervalMs: 50 });
          assert.equal(oks(back).length, 2, 'circuit closed after heartbeat_timeout');
          assert.ok(Date.now() - opened >= 0.9 * config.heartbeat_timeout * 1000, `closed after ${Date.now() - opened} ms, heartbeat_timeout ${config.heartbeat_timeout} s`);
        }));

      it('waitForWork returns early when work is enqueued, and after its timeout otherwise', needs('queue', 'wakeOnWork'), () =>
        withBackend({}, async (b) => {
          assert.ok(can(b, 'wakeOnWork'));
          let t = Date.now();
          await b.waitForWork(300);
          assert.ok(Date.now() - t < 5000, `an idle wait returned after ${Date.now() - t} ms`);
          t = Date.now();
          const waiting = b.waitForWork(20_000);
          await sleep(100);
          await b.enqueue([batch('j')]);
          await waiting;
          assert.ok(Date.now() - t < 10_000, `woke ${Date.now() - t} ms after the wait began (timeout 20 s)`);
        }));
    });

    describe(`job store (manifests and artifacts)`, { concurrency: h.concurrency }, () => {
      it('artifacts and job manifests round-trip byte-exact', () =>
        withBackend({}, async (b) => {
          const blob = Uint8Array.from({ length: 512 }, (_, i) => (i * 7 + 3) & 0xff);
          await b.putArtifact('f'.repeat(64), blob);
          await b.putArtifact('f'.repeat(64), blob); // a second put is harmless
          const back = await b.getArtifact('f'.repeat(64));
          assert.ok(back);
          assert.deepEqual(bytes(back), bytes(blob));
          assert.equal(await b.getArtifact('0'.repeat(64)), null);

          const job = `job-${randomUUID()}`;
          const m = manifest(job, await b.now());
          await b.putJob(m);
          assert.deepEqual(await b.getJob(job), m);
          assert.equal(await b.getJob('nope'), null);
          await b.enqueue([batch(job)]);
          const [c] = oks(await claimUntil(b, 'w1', 1, 5000));
          await b.completeBatch('w1', c, Uint8Array.from([9]));
          assert.equal((await readAll(b, job, 1)).length, 1);
          await b.deleteJob(job);
          assert.equal(await b.getJob(job), null);
          assert.deepEqual((await b.readResults(job, '0', 0)).entries, [], 'deleteJob drops the result stream');
        }));
    });

    describe(`worker registry (heartbeats)`, { concurrency: h.concurrency }, () => {
      it('heartbeats make workers active until heartbeat_timeout passes', () =>
        withBackend({ heartbeat_timeout: 0.5 }, async (b, config) => {
          // The harness may raise the timeout (Kafka: its consumer session); every wait scales with it.
          const T = config.heartbeat_timeout * 1000;
          const info = { workerId: 'w1', host: 'host-a', pid: 1234, threads: 4, startedAt: 1_700_000_000_000, state: 'running' as const };
          await b.heartbeat(info);
          await b.heartbeat({ ...info, workerId: 'w2', pid: 99 });
          const now = await b.now();
          let active = await until('w1 and w2 active', async () => {
            const a = await b.activeWorkers();
            return a.length >= 2 && a;
          }, h.patienceMs);
          assert.deepEqual(active.map((w) => w.workerId).sort(), ['w1', 'w2']);
          const w1 = active.find((w) => w.workerId === 'w1')!;
          assert.equal(w1.host, 'host-a');
          assert.equal(w1.pid, 1234);
          assert.equal(w1.threads, 4);
          assert.equal(w1.startedAt, info.startedAt);
          assert.equal(w1.state, 'running');
          assert.ok(typeof w1.lastHeartbeat === 'number' && Math.abs(w1.lastHeartbeat - now) < 1000, `lastHeartbeat ${w1.lastHeartbeat} vs now ${now}`);
          await b.removeWorker('w2');
          assert.deepEqual((await b.activeWorkers()).map((w) => w.workerId), ['w1']);
          assert.deepEqual((await b.stats()).workers.map((w) => w.workerId), ['w1']);
          // Renewed every quarter of heartbeat_timeout (a margin of 4×) for two timeouts: w1 is still
          // active only if each heartbeat renews it.
          const renewing = Date.now();
          while (Date.now() - renewing < 2 * T) {
            await sleep(T / 4);
            await b.heartbeat({ ...info, casesCompleted: 7, state: 'draining' });
          }
          active = await until('the renewed heartbeats to keep w1 active', async () => {
            const a = await b.activeWorkers();
            return a.length === 1 && a[0].casesCompleted === 7 && a;
          }, h.patienceMs);
          assert.equal(active.length, 1, 'the renewed heartbeat keeps w1 active');
          assert.equal(active[0].casesCompleted, 7);
          assert.equal(active[0].state, 'draining');
          // No more heartbeats: w1 drops out once heartbeat_timeout has passed (polled, never slept for).
          await until('w1 to time out', async () => (await b.activeWorkers()).length === 0, { timeoutMs: 10 * T + h.patienceMs });
        }));
    });

    describe(`queue admin (stats, the dead-letter queue, withdrawal, dashboard records)`, { concurrency: h.concurrency }, () => {
      it('withdrawJob removes the job\'s batches wherever they wait, drops its manifest and results, and leaves other jobs alone', needs('admin', 'withdraw'), () =>
        withBackend({}, async (b, _c) => {
          assert.ok(can(b, 'withdraw'));
          const job = `job-${randomUUID()}`;
          const other = `job-${randomUUID()}`;
          await b.putJob(manifest(job, await b.now()));
          await b.putJob(manifest(other, await b.now()));
          const mine = [batch(job), batch(job), batch(job), batch(job, { priority: 'high' })];
          const theirs = batch(other);
          await b.enqueue([...mine, theirs]);
          let inFlight: ClaimedBatch | undefined;
          if (caps.queue.leases && caps.queue.fifo) {
            // One of the job's batches in flight, one waiting out a retry delay, two pending.
            const got = oks(await b.claimBatches('w1', 2, 60_000)).filter((x) => x.jobId === job);
            assert.ok(got.length >= 2, `claimed ${got.length} of the job's batches`);
            inFlight = got[0];
            await b.releaseBatch('w1', got[1].id, { delayMs: 60_000, countAttempt: true, error: wireError('MG_ERR_WORKER', 'later') });
          }
          const removed = await b.withdrawJob(job, mine.map((x) => x.id));
          if (caps.admin.pendingExcludesClaimed) assert.equal(removed, mine.length, 'every batch of the job is removed');
          await until('the manifest dropped', async () => (await b.getJob(job)) === null, h.patienceMs);
          assert.equal((await b.getJob(other))?.jobId, other, 'another job keeps its manifest');
          if (inFlight) {
            assert.deepEqual(await b.renewLeases('w1', [inFlight.id], 60_000), [inFlight.id], 'the lease of a withdrawn batch is revoked');
            assert.equal(await b.completeBatch('w1', inFlight, Uint8Array.from([1])), false);
            assert.deepEqual((await b.readResults(job, '0', 0)).entries, [], 'results of a withdrawn job are dropped');
            await b.deadLetter('w1', inFlight.id, wireError('MG_ERR_MALFORMED_BATCH', 'late'));
            assert.deepEqual(await b.listDead(), [], 'nothing of a withdrawn job reaches the DLQ');
          }
          // Only the other job's batch is left to claim.
          const left = oks(await claimUntil(b, 'w2', 10, 5000, 1));
          assert.deepEqual(left.map((x) => x.id), [theirs.id]);
          assert.deepEqual(oks(await b.claimBatches('w2', 10, 5000)), []);
          if (caps.admin.delayedStats) {
            const s = await b.stats();
            assert.equal(s.delayed, 0);
            assert.equal(s.inflight, 1);
          }
          assert.equal(await b.completeBatch('w2', left[0], Uint8Array.from([2])), true);
          assert.equal((await readAll(b, other, 1)).length, 1, 'the other job still gets its results');
        }));

      it('deadLetter records the reason and tells the job; listDead, retryDead and purgeDead manage the DLQ', () =>
        withBackend({}, async (b) => {
          const job = `job-${randomUUID()}`;
          await b.putJob(manifest(job, await b.now()));
          const sent = batch(job, { role: 'candidate' });
          await b.enqueue([sent]);
          const t0 = await b.now();
          const [c] = oks(await claimUntil(b, 'w1', 1, 5000));
          assert.equal(c.id, sent.id);
          await b.deadLetter('w1', c.id, wireError('MG_ERR_MALFORMED_BATCH', 'bad mac'));

          const dead = await b.listDead();
          assert.equal(dead.length, 1);
          assert.equal(dead[0].id, sent.id);
          assert.equal(dead[0].jobId, job);
          assert.equal(dead[0].role, 'candidate');
          assert.equal(dead[0].attempts, 1);
          assert.equal(dead[0].error.message, 'bad mac');
          assert.ok(dead[0].deadAt >= t0 - 1000 && dead[0].deadAt <= (await b.now()) + 1000, `deadAt ${dead[0].deadAt}`);
          const entries = await readAll(b, job, 1);
          assert.deepEqual(entries.map((e) => e.kind), ['dead']);
          assert.equal(entries[0].batchId, sent.id);
          assert.ok(entries[0].kind === 'dead' && entries[0].error.message === 'bad mac');
          let s = await b.stats();
          assert.equal(s.dead, 1);
          assert.equal(s.inflight, 0);
          assert.deepEqual(await b.claimBatches('w3', 1, 1000), []);

          assert.equal(await b.retryDead('no-such-id'), 0);
          assert.equal(await b.retryDead(sent.id), 1);
          assert.deepEqual(await b.listDead(), []);
          const [back] = oks(await claimUntil(b, 'w3', 1, 5000));
          assert.equal(back.id, sent.id);
          assert.equal(back.attempt, 1, 'attempts reset by retryDead');
          assert.deepEqual(bytes(back.payload), bytes(sent.payload));

          await b.deadLetter('w3', back.id, wireError('MG_ERR_MALFORMED_BATCH', 'poison pill'));
          const again = await b.listDead();
          assert.equal(again.length, 1);
          assert.equal(again[0].error.message, 'poison pill');
          assert.equal((await b.stats()).inflight, 0);
          const last = (await readAll(b, job, 2)).at(-1)!;
          assert.ok(last.kind === 'dead' && last.error.message === 'poison pill');
          assert.equal(await b.purgeDead(), 1);
          assert.deepEqual(await b.listDead(), []);
          s = await b.stats();
          assert.equal(s.dead, 0);
          assert.equal(await b.retryDead(), 0);
        }));

      it('retryDead() without an id requeues every dead batch; listDead honours its limit', () =>
        withBackend({ max_requeue_attempts: 0 }, async (b) => {
          const sent = [batch('j'), batch('j'), batch('j')];
          await b.enqueue(sent);
          for (const c of oks(await claimUntil(b, 'w1', 3, 5000))) await b.deadLetter('w1', c.id, wireError('MG_ERR_MALFORMED_BATCH', 'bad'));
          assert.equal((await b.listDead()).length, 3);
          assert.equal((await b.listDead(2)).length, 2);
          assert.equal(await b.retryDead(), 3);
          await until('3 batches pending', async () => (await b.stats()).pending.normal === 3, h.patienceMs);
          assert.equal(await b.purgeDead(), 0);
        }));

      it('stats count pending per priority, in-flight, delayed, dead and the counters', needs('admin', 'perPriorityStats'), () =>
        withBackend({ strict_priority: true }, async (b) => {
          const fresh = await b.stats();
          assert.deepEqual(fresh.pending, { critical: 0, high: 0, normal: 0, low: 0 });
          assert.deepEqual([fresh.inflight, fresh.delayed, fresh.dead, fresh.completed, fresh.dispatched, fresh.requeued], [0, 0, 0, 0, 0, 0]);
          await b.enqueue([batch('j', { priority: 'high' }), batch('j', { priority: 'high' }), batch('j'), batch('j'), batch('j', { priority: 'low' })]);
          let s = await b.stats();
          assert.deepEqual(s.pending, { critical: 0, high: 2, normal: 2, low: 1 });
          assert.equal(s.dispatched, 5);
          const [x, y] = oks(await b.claimBatches('w1', 2, 5000));
          s = await b.stats();
          assert.equal(s.pending.high, 0);
          assert.equal(s.inflight, 2);
          await b.completeBatch('w1', x, Uint8Array.from([1]));
          await b.releaseBatch('w1', y.id, { delayMs: 60_000, countAttempt: true, error: wireError('MG_ERR_WORKER', 'retry later') });
          const [z] = oks(await b.claimBatches('w1', 1, 5000));
          await b.deadLetter('w1', z.id, wireError('MG_ERR_MALFORMED_BATCH', 'bad'));
          s = await b.stats();
          assert.deepEqual(s.pending, { critical: 0, high: 0, normal: 1, low: 1 });
          assert.equal(s.inflight, 0);
          assert.equal(s.delayed, 1);
          assert.equal(s.dead, 1);
          assert.equal(s.completed, 1);
          assert.equal(s.requeued, 1);
          assert.equal(s.dispatched, 5);
        }));

      it('administration: progress entries, a cancellation request, withdrawing one job', needs('admin', 'progress', 'withdraw'), () =>
        withBackend({ strict_priority: true }, async (b) => {
          assert.ok(can(b, 'progress') && can(b, 'withdraw'));
          const job = `job-${randomUUID()}`;
          const other = `job-${randomUUID()}`;
          const progress = { jobId: job, task: 'conformance', total: 8, done: { baseline: 2, candidate: 1 }, passed: { baseline: 2, candidate: 0 }, errors: { baseline: 0, candidate: 1 }, priority: 'normal' as const, host: 'h', pid: 1, startedAt: Date.now() };
          assert.deepEqual(await b.publishProgress(progress), { cancelRequested: false });
          const [listed] = await b.listProgress();
          assert.equal(listed.jobId, job);
          assert.deepEqual(listed.done, progress.done);
          assert.ok(typeof listed.updatedAt === 'number');
          assert.equal(await b.requestCancel(`job-${randomUUID()}`), false, 'unknown job');
          assert.equal(await b.requestCancel(job), true);
          assert.deepEqual(await b.publishProgress(progress), { cancelRequested: true });
          assert.equal((await b.listProgress())[0].cancelRequested, true);

          const mine = [batch(job), batch(job), batch(job, { priority: 'high' })];
          const theirs = [batch(other), batch(other)];
          await b.enqueue([mine[0], theirs[0], mine[1], theirs[1], mine[2]]);
          // One of ours goes to the delayed set (a retry), one of theirs is claimed: both kinds are handled.
          const claimed = oks(await b.claimBatches('w1', 2, 5000));
          assert.deepEqual(claimed.map((c) => c.id), [mine[2].id, mine[0].id]);
          await b.releaseBatch('w1', mine[0].id, { delayMs: 60_000, countAttempt: true, error: wireError('MG_ERR_WORKER', 'later') });
          assert.equal(await b.withdrawJob(job), 3, 'the delayed, the pending and the claimed batch of the job');
          const s = await b.stats();
          assert.equal(s.pending.normal, 2, "the other job's batches stay");
          assert.equal(s.delayed, 0);
          assert.equal(s.inflight, 0, 'a claimed batch of a withdrawn job loses its lease (its worker drops it)');
          assert.deepEqual(await b.renewLeases('w1', [mine[2].id], 5000), [mine[2].id]);
          if (can(b, 'priorityCounts')) {
            const [left] = oks(await b.claimBatches('w2', 1, 5000));
            await b.deadLetter('w2', left.id, wireError('MG_ERR_MALFORMED_BATCH', 'bad'));
            const counts = await b.priorityCounts();
            assert.deepEqual(counts.inflight, { critical: 0, high: 0, normal: 0, low: 0 });
            assert.deepEqual(counts.dead, { critical: 0, high: 0, normal: 1, low: 0 });
          }
          await b.removeProgress(job);
          assert.deepEqual(await b.listProgress(), []);
        }));

      it('preflight resolves to notices, each with an event and a message', needs('admin', 'preflight'), () =>
        withBackend({}, async (b) => {
          assert.ok(can(b, 'preflight'));
          const notices = await b.preflight();
          assert.ok(Array.isArray(notices));
          for (const n of notices) assert.ok(typeof n.event === 'string' && typeof n.message === 'string' && n.message.length > 0, JSON.stringify(n));
        }));

      it('the last bench sweep is stored with the backend clock and read back', needs('admin', 'benchRecords'), () =>
        withBackend({}, async (b) => {
          assert.ok(can(b, 'benchRecords'));
          assert.equal(await b.getBenchRecord(), null);
          const t0 = await b.now();
          const sweep = [{ batch_size: 8, cases_per_sec: 100 }, { batch_size: 64, cases_per_sec: 420.5 }];
          await b.putBenchRecord({ recommendedBatchSize: 64, sweep });
          const back = await b.getBenchRecord();
          assert.ok(back);
          assert.equal(back.recommendedBatchSize, 64);
          assert.deepEqual(back.sweep, sweep);
          assert.ok(back.at >= t0 - 1000 && back.at <= (await b.now()) + 1000, `at ${back.at}`);
        }));
    });

    if (h.name === 'redis') redisOnly();
    if (h.name === 'redis-cluster') clusterOnly();
  });
}

/** What only Redis has: key layout, raw data, connection faults, restarts. */
function redisOnly(): void {
  async function make(overrides: Record<string, unknown> = {}): Promise<{ backend: Backend; config: QueueConfig }> {
    return redisHarness.create(overrides);
  }

  it('redis: every key of a queue shares one hash tag', async () => {
    const { backend: b, config } = await make({ max_requeue_attempts: 0 });
    try {
      const job = `job-${randomUUID()}`;
      await b.putJob(manifest(job, await b.now()));
      await b.putArtifact('c'.repeat(64), Uint8Array.from([1, 2]));
      await b.enqueue([batch(job), batch(job, { priority: 'high' })]);
      const [x, y] = oks(await b.claimBatches('w1', 2, 5000));
      await b.completeBatch('w1', x, Uint8Array.from([1]));
      await b.releaseBatch('w1', y.id, { delayMs: 0, countAttempt: true, error: wireError('MG_ERR_WORKER', 'dead') });
      await b.heartbeat({ workerId: 'w1', host: 'h', pid: 1, threads: 1, startedAt: 0 });
      const keys = await raw!.keys(`*${config.queue}*`);
      assert.ok(keys.length >= 6, `keys: ${keys.join(', ')}`);
      for (const k of keys) assert.ok(k.startsWith(`mg:{${config.queue}}:`), `key ${k} lacks the hash tag`);
    } finally {
      await b.close();
    }
  });

  it('redis: lease deadlines are measured on the Redis clock', async () => {
    const { backend: b, config } = await make();
    try {
      await b.enqueue([batch('j')]);
      const [c] = oks(await b.claimBatches('w1', 1, 10_000));
      const [sec, usec] = await raw!.time();
      const serverNow = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
      const deadline = Number(await raw!.zscore(`mg:{${config.queue}}:inflight`, c.id));
      assert.ok(Math.abs(deadline - (serverNow + 10_000)) < 1000, `deadline ${deadline} vs server now ${serverNow}`);
      assert.ok(Math.abs((await b.now()) - serverNow) < 1000);
    } finally {
      await b.close();
    }
  });

  it('redis: a batch hash without payload comes back as {ok:false}', async () => {
    const { backend: b, config } = await make();
    try {
      const p = `mg:{${config.queue}}:`;
      await raw!.hset(`${p}batch:m1`, 'job', 'j', 'role', 'baseline', 'priority', 'normal', 'attempts', '0');
      await raw!.rpush(`${p}pending:normal`, 'm1');
      const claims = await b.claimBatches('w1', 1, 5000);
      assert.equal(claims.length, 1);
      assert.ok(!claims[0].ok);
      assert.equal(claims[0].id, 'm1');
      assert.equal(claims[0].error.code, 'MG_ERR_MALFORMED_BATCH');
      assert.match(claims[0].error.message, /payload/);
      await b.deadLetter('w1', 'm1', claims[0].error);
      assert.equal((await b.listDead())[0].id, 'm1');
      // An abandoned garbage claim is dead-lettered when its lease expires, never lost.
      await raw!.lpush(`${p}pending:normal`, 'junk');
      assert.equal((await b.claimBatches('w1', 1, LEASE_MS)).length, 1);
      assert.deepEqual((await reclaimUntil(b, ['junk'])).deadLettered, ['junk']);
      assert.equal((await b.stats()).dead, 2);
    } finally {
      await b.close();
    }
  });

  it('redis: connect() fails fast with MG_ERR_BACKEND when Redis is unreachable', async () => {
    const { RedisBackend } = await import('../src/queue/redis/backend.js');
    // A port nobody listens on: bind one, close it.
    const net = await import('node:net');
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const a = s.address();
        s.close(() => resolve(typeof a === 'object' && a ? a.port : 1));
      });
    });
    const config = validateQueueConfig({ backend: 'redis', queue: queueName(), connection: { host: '127.0.0.1', port } });
    const b = new RedisBackend(config);
    const t = Date.now();
    await assert.rejects(b.connect(), (err: { code?: string; message?: string }) => err.code === 'MG_ERR_BACKEND' && /cannot connect/.test(err.message ?? ''));
    assert.ok(Date.now() - t < 6000, `failed after ${Date.now() - t} ms`);
    await b.close();
  });

  it('redis: survives a restart and a crash (AOF data kept, scripts reloaded, queued commands replayed)', async () => {
    const { backend: b } = await make();
    try {
      const sent = [batch('j'), batch('j'), batch('j')];
      await b.enqueue(sent);
      oks(await b.claimBatches('w1', 1, 5000)); // loads the scripts on this server
      await server!.restart();
      const [second] = oks(await b.claimBatches('w1', 1, 5000));
      assert.equal(second.id, sent[1].id, 'data survived a graceful restart');
      await server!.kill9();
      const during = b.claimBatches('w1', 1, 5000); // issued while Redis is down
      await sleep(200);
      await server!.restart();
      const [third] = oks(await during);
      assert.equal(third.id, sent[2].id, 'the command issued during the outage ran after the restart');
      assert.equal((await b.stats()).inflight, 3);
    } finally {
      await b.close();
    }
  });
}

/** What only a Redis Cluster has: slot placement of a queue's keys. */
function clusterOnly(): void {
  it('redis-cluster: every key of a queue lives in one slot, on one master', async () => {
    const { backend: b, config } = await redisClusterHarness.create({ max_requeue_attempts: 0 });
    try {
      const job = `job-${randomUUID()}`;
      await b.putJob(manifest(job, await b.now()));
      await b.putArtifact('c'.repeat(64), Uint8Array.from([1, 2]));
      await b.enqueue([batch(job), batch(job, { priority: 'high' })]);
      const [x, y] = oks(await b.claimBatches('w1', 2, 5000));
      await b.completeBatch('w1', x, Uint8Array.from([1]));
      await b.releaseBatch('w1', y.id, { delayMs: 0, countAttempt: true, error: wireError('MG_ERR_WORKER', 'dead') });
      await b.heartbeat({ workerId: 'w1', host: 'h', pid: 1, threads: 1, startedAt: 0 });
      const port = await cluster!.masterOf(`mg:{${config.queue}}:x`);
      const node = new Redis({ port, host: '127.0.0.1', lazyConnect: true });
      node.on('error', () => {});
      await node.connect();
      try {
        const keys = await node.keys(`*${config.queue}*`);
        assert.ok(keys.length >= 6, `keys on the slot's master: ${keys.join(', ')}`);
        const slots = new Set<number>();
        for (const k of keys) slots.add(Number(await node.call('CLUSTER', 'KEYSLOT', k)));
        assert.equal(slots.size, 1, `one slot for all of the queue's keys: ${[...slots].join(', ')}`);
      } finally {
        node.disconnect();
      }
    } finally {
      await b.close();
    }
  });
}

// The backends share nothing, so their suites run side by side (each one's tests run in order).
const harnesses = [memoryHarness, redisHarness, redisClusterHarness, kafkaHarness, rabbitHarness, sqsHarness];
const declared = await Promise.all(harnesses.map((h) => h.declared()));
describe('backend conformance', { concurrency: true }, () => {
  harnesses.forEach((h, i) => conformance(h, declared[i]));
});
