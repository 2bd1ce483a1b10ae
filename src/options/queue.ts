/**
 * Queue config: the keys the Metamorphic Guard queue guide documents plus metaguard's own.
 * One schema with defaults, validated once; unknown keys and keys of another backend are errors.
 */
import { availableParallelism } from 'node:os';
import { coerce, type Field, type OptionsOf } from './schema.js';
import { invalidOption, MetaguardError } from '../errors.js';
import { priorities, type Priority } from '../core/protocol.js';
import { QUEUE_WEIGHTS } from './defaults.js';

export const backends = ['memory', 'redis', 'kafka', 'rabbitmq', 'sqs'] as const;
export type BackendName = (typeof backends)[number];

type QField = Field & { backends?: readonly BackendName[] };

const common = {
  backend: { type: 'enum', values: backends, default: 'memory', description: 'queue backend' },
  queue: { type: 'string', default: 'metaguard', description: 'queue name (Redis key prefix, Kafka topic prefix, RabbitMQ/SQS queue name)' },
  lease_seconds: { type: 'number', min: 0, exclusiveMin: true, default: 60, description: 'lease of a claimed batch, renewed while it runs' },
  heartbeat_timeout: { type: 'number', min: 0, exclusiveMin: true, default: 30, description: 'a worker without a heartbeat this long is inactive' },
  heartbeat_check_interval: { type: 'number', min: 0, exclusiveMin: true, default: 5, description: 'seconds between heartbeats, lease renewals and reclaim sweeps' },
  circuit_breaker_threshold: { type: 'int', min: 1, default: 3, description: 'lost leases after which a worker may not claim for heartbeat_timeout' },
  enable_requeue: { type: 'bool', default: true, description: 'requeue batches whose lease expired' },
  max_requeue_attempts: { type: 'int', min: 0, default: 3, description: 'requeues before a batch is dead-lettered' },
  compress: { type: 'bool', default: true, description: 'LZ4-compress batch frames when it helps' },
  adaptive_batching: { type: 'bool', default: true, description: 'tune the batch size from measured throughput' },
  batch_size: { type: 'int', min: 1, max: 100_000, description: 'fixed batch size (turns adaptive batching off)' },
  initial_batch_size: { type: 'int', min: 1, max: 100_000, default: 10, description: 'first batch size of adaptive batching' },
  min_batch_size: { type: 'int', min: 1, max: 100_000, default: 1, description: 'smallest adaptive batch' },
  max_batch_size: { type: 'int', min: 1, max: 100_000, default: 100, description: 'largest adaptive batch' },
  priority: { type: 'enum', values: priorities, default: 'normal', description: 'priority of this evaluation\'s batches' },
  queue_weights: { type: 'json', description: 'weights of weighted priority claiming', default: QUEUE_WEIGHTS },
  strict_priority: { type: 'bool', default: false, description: 'always claim the highest non-empty priority first' },
  hmac_key: { type: 'string', description: 'sign batches, job manifests, results and dead letters with HMAC-SHA256 (same key on coordinator and workers)' },
  result_ttl_seconds: { type: 'int', min: 1, default: 86_400, description: 'retention of results, manifests, artifacts and dead letters' },
  max_frame_bytes: { type: 'int', min: 65_536, max: 268_435_456, description: 'largest results frame a worker publishes; a batch\'s results over it travel in several parts (default: the backend\'s message limit less headroom: redis 32 MiB, kafka 900 KiB, rabbitmq 8 MiB, sqs 240 KiB, memory 64 MiB)' },
  retry_base_ms: { type: 'int', min: 0, default: 200, description: 'base of exponential retry backoff' },
  retry_max_ms: { type: 'int', min: 0, default: 30_000, description: 'cap of retry backoff' },
  spawn_local_workers: { type: 'int', min: 0, max: 256, default: 0, description: 'in-process workers the coordinator starts (memory backend); true: one per thread', backends: ['memory'] },
  connection: { type: 'json', description: 'redis connection {host, port, db, username, password, ssl, sentinels, name, sentinel_password} or {url}; rabbitmq {host, port, virtual_host, username, password, ssl}', backends: ['redis', 'rabbitmq'] },
  url: { type: 'string', description: 'redis:// or amqp:// URL', backends: ['redis', 'rabbitmq'] },
  shards: { type: 'int', min: 1, max: 64, default: 1, description: 'spread each evaluation over this many queues on different hash tags (Redis Cluster masters); workers consume from all', backends: ['redis'] },
  cluster_nodes: { type: 'json', description: 'redis cluster seed nodes ["host:port", …] (or "host:port,host:port"): use the Redis Cluster client; credentials and TLS come from connection', backends: ['redis'] },
  bootstrap_servers: { type: 'string', description: 'kafka bootstrap servers, host:port[,host:port]', backends: ['kafka'] },
  topic: { type: 'string', description: 'kafka topic of batches', backends: ['kafka'] },
  consumer_group: { type: 'string', description: 'kafka consumer group of workers', backends: ['kafka'] },
  auto_commit: { type: 'bool', description: 'kafka (Metamorphic Guard spelling): accepted; offsets are always committed after results are published', backends: ['kafka'] },
  enable_auto_commit: { type: 'bool', description: 'kafka (librdkafka spelling): same as auto_commit', backends: ['kafka'] },
  session_timeout_ms: { type: 'int', min: 1000, max: 3_600_000, description: 'kafka consumer session timeout, ms (sets heartbeat_timeout when that is not given)', backends: ['kafka'] },
  ssl: { type: 'json', description: 'kafka TLS, rabbitmq TLS options of an amqps:// url: true, or {ca, cert, key, servername, reject_unauthorized} (file paths)', backends: ['kafka', 'rabbitmq'] },
  sasl: { type: 'json', description: 'kafka SASL: {mechanism: plain|scram-sha-256|scram-sha-512, username, password}', backends: ['kafka'] },
  queue_name: { type: 'string', description: 'rabbitmq/sqs queue name (the same as queue)', backends: ['rabbitmq', 'sqs'] },
  exchange: { type: 'string', description: 'rabbitmq direct exchange the batches are published to (default metaguard)', backends: ['rabbitmq'] },
  routing_key: { type: 'string', description: 'rabbitmq routing key of batches (default: the queue name; one per priority: <routing_key>.<priority>)', backends: ['rabbitmq'] },
  durable: { type: 'bool', description: 'rabbitmq durable queues and persistent messages (default true)', backends: ['rabbitmq'] },
  prefetch_count: { type: 'int', min: 1, max: 65_535, description: 'rabbitmq: most batches one backend holds unacknowledged; the results consumer prefetch (default 10)', backends: ['rabbitmq'] },
  heartbeat: { type: 'int', min: 0, max: 3600, description: 'rabbitmq AMQP connection heartbeat, seconds (default 10; 0: off)', backends: ['rabbitmq'] },
  queue_url: { type: 'string', description: 'sqs queue URL', backends: ['sqs'] },
  region: { type: 'string', description: 'sqs region (default: from queue_url, the AWS environment, or us-east-1)', backends: ['sqs'] },
  endpoint_url: { type: 'string', description: 'sqs (and s3) endpoint, for emulators and VPC endpoints', backends: ['sqs'] },
  visibility_timeout: { type: 'int', min: 1, max: 43_200, description: 'sqs lease of a received batch, seconds (default: lease_seconds), renewed while it runs', backends: ['sqs'] },
  long_polling_seconds: { type: 'int', min: 0, max: 20, description: 'sqs WaitTimeSeconds of an idle worker\'s receive (default 20)', backends: ['sqs'] },
  s3_bucket: { type: 'string', description: 'sqs: S3 bucket for messages over 256 KiB', backends: ['sqs'] },
  aws_access_key_id: { type: 'string', description: 'sqs credentials (default: the AWS credential chain)', backends: ['sqs'] },
  aws_secret_access_key: { type: 'string', description: 'sqs credentials (default: the AWS credential chain)', backends: ['sqs'] },} as const satisfies Record<string, QField>;

export const queueConfigSchema = common;
/** The same fields, for code that looks them up by a key it read. */
const fields: Record<string, QField> = common;

/** TLS settings: file paths as given; the files are read when the backend connects (tls.ts). */
export interface TlsSettings {
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
  rejectUnauthorized: boolean;
}

export interface RedisConnection {
  host: string;
  port: number;
  db: number;
  /** Redis 6 ACL user. */
  username?: string;
  password?: string;
  /** `ssl: true` (system CAs) or an object with files: either way TLS is on. */
  ssl: boolean;
  tls?: TlsSettings;
  url?: string;
  /** rabbitmq only */
  virtual_host?: string;
  /** Redis Sentinel: the sentinels to ask and the monitored master's name. */
  sentinels?: { host: string; port: number }[];
  name?: string;
  sentinel_password?: string;
}

export interface KafkaSasl {
  mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512';
  username: string;
  password: string;
}


/**
 * A validated queue config: the schema's fields (types inferred from it), with the structured keys
 * as their validators leave them.
 */
export type QueueConfig = Omit<OptionsOf<typeof queueConfigSchema>, 'connection' | 'cluster_nodes' | 'ssl' | 'sasl' | 'queue_weights'> & {
  connection?: RedisConnection;
  /** Redis Cluster seed nodes; when set, the Redis backend uses ioredis' Cluster client. */
  cluster_nodes?: ClusterNode[];
  /** Kafka TLS (true: system CAs). */
  ssl?: boolean | TlsSettings;
  sasl?: KafkaSasl;
  queue_weights: Record<Priority, number>;
};

const field = (key: string) => `queue-config.${key}`;

/** Where "accepted, but has no effect here" warnings go: one stderr line each, once per process. */
let warningSink: (message: string) => void = (message) => process.stderr.write(`metaguard: warning: ${message}\n`);
const warned = new Set<string>();
export function setQueueConfigWarningSink(sink: (message: string) => void): void {
  warningSink = sink;
}
function warnOnce(message: string): void {
  if (warned.has(message)) return;
  warned.add(message);
  warningSink(message);
}

const str = (name: string, v: unknown) => coerce(name, { type: 'string', description: '' }, v) as string;

function knownKeys(c: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(c)) {
    if (!allowed.includes(key)) throw new MetaguardError('MG_ERR_UNKNOWN_OPTION', `${field(where + '.' + key)}: unknown key (known: ${allowed.join(', ')})`, { field: field(where + '.' + key) });
  }
}

/** `true`/`false`, or an object of TLS files and switches. */
export function validateTls(raw: unknown, where: string): { on: boolean; tls?: TlsSettings } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { on: coerce(field(where), { type: 'bool', description: '' }, raw) as boolean };
  const c = raw as Record<string, unknown>;
  knownKeys(c, ['ca', 'cert', 'key', 'servername', 'reject_unauthorized'], where);
  const tls: TlsSettings = { rejectUnauthorized: c.reject_unauthorized === undefined ? true : (coerce(field(where + '.reject_unauthorized'), { type: 'bool', description: '' }, c.reject_unauthorized) as boolean) };
  for (const k of ['ca', 'cert', 'key', 'servername'] as const) if (c[k] !== undefined) tls[k] = str(field(`${where}.${k}`), c[k]);
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw invalidOption(field(where), 'a client certificate needs both cert and key');
  return { on: true, tls };
}

function validateSasl(raw: unknown): KafkaSasl {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalidOption(field('sasl'), 'must be an object {mechanism, username, password}');
  const c = raw as Record<string, unknown>;
  knownKeys(c, ['mechanism', 'username', 'password'], 'sasl');
  const mechanism = coerce(field('sasl.mechanism'), { type: 'enum', values: ['plain', 'scram-sha-256', 'scram-sha-512'], description: '' }, c.mechanism ?? 'plain') as KafkaSasl['mechanism'];
  if (c.username === undefined || c.password === undefined) throw invalidOption(field('sasl'), 'needs username and password');
  return { mechanism, username: str(field('sasl.username'), c.username), password: str(field('sasl.password'), c.password) };
}

function validateConnection(raw: unknown, backend: BackendName = 'redis'): RedisConnection {
  const rabbit = backend === 'rabbitmq';
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalidOption(field('connection'), rabbit ? 'must be an object {host, port, virtual_host, username, password, ssl}' : 'must be an object {host, port, db, username, password, ssl, sentinels, name} or {url}');
  const allowed = new Set(rabbit ? ['host', 'port', 'virtual_host', 'username', 'password', 'ssl'] : ['host', 'port', 'db', 'username', 'password', 'ssl', 'url', 'sentinels', 'name', 'sentinel_password', 'decode_responses']);
  const c = raw as Record<string, unknown>;
  for (const key of Object.keys(c)) if (!allowed.has(key)) throw new MetaguardError('MG_ERR_UNKNOWN_OPTION', `${field('connection.' + key)}: unknown key (known: ${[...allowed].join(', ')})`, { field: field('connection.' + key) });
  const out: RedisConnection = {
    host: c.host === undefined ? '127.0.0.1' : (coerce(field('connection.host'), { type: 'string', description: '' }, c.host) as string),
    port: c.port === undefined ? (rabbit ? (c.ssl === true || (c.ssl !== null && typeof c.ssl === 'object') ? 5671 : 5672) : 6379) : (coerce(field('connection.port'), { type: 'int', min: 1, max: 65535, description: '' }, c.port) as number),
    db: c.db === undefined ? 0 : (coerce(field('connection.db'), { type: 'int', min: 0, max: 15, description: '' }, c.db) as number),
    ssl: false,
  };
  if (c.decode_responses !== undefined) {
    coerce(field('connection.decode_responses'), { type: 'bool', description: '' }, c.decode_responses);
    warnOnce(`${field('connection.decode_responses')} has no effect: metaguard reads binary frames from Redis and decodes them itself`);
  }
  if (c.ssl !== undefined) {
    const { on, tls } = validateTls(c.ssl, 'connection.ssl');
    out.ssl = on;
    if (tls) out.tls = tls;
  }
  if (c.username !== undefined) out.username = str(field('connection.username'), c.username);
  if (c.password !== undefined) out.password = str(field('connection.password'), c.password);
  if (c.url !== undefined) out.url = str(field('connection.url'), c.url);
  if (c.sentinels !== undefined) {
    if (!Array.isArray(c.sentinels) || c.sentinels.length === 0) throw invalidOption(field('connection.sentinels'), 'must be a non-empty list of {host, port}');
    out.sentinels = c.sentinels.map((sn, i) => {
      const where = `connection.sentinels[${i}]`;
      if (sn === null || typeof sn !== 'object' || Array.isArray(sn)) throw invalidOption(field(where), 'must be an object {host, port}');
      knownKeys(sn as Record<string, unknown>, ['host', 'port'], where);
      const e = sn as Record<string, unknown>;
      return {
        host: e.host === undefined ? '127.0.0.1' : str(field(where + '.host'), e.host),
        port: e.port === undefined ? 26379 : (coerce(field(where + '.port'), { type: 'int', min: 1, max: 65535, description: '' }, e.port) as number),
      };
    });
    if (c.name === undefined) throw invalidOption(field('connection.name'), 'is required with sentinels (the master name the sentinels monitor)');
  }
  if (c.name !== undefined) {
    if (c.sentinels === undefined) throw invalidOption(field('connection.name'), 'is only used with sentinels');
    out.name = str(field('connection.name'), c.name);
  }
  if (c.sentinel_password !== undefined) out.sentinel_password = str(field('connection.sentinel_password'), c.sentinel_password);
  if (c.virtual_host !== undefined) out.virtual_host = str(field('connection.virtual_host'), c.virtual_host);
  return out;
}

export interface ClusterNode {
  host: string;
  port: number;
}

/**
 * `cluster_nodes`: a non-empty list of "host:port" seeds (an array, or one comma-separated string).
 * A cluster has one database, and its nodes come from the seeds, so `url`, `connection.url`,
 * `connection.host`, `connection.port` and a non-zero `connection.db` are refused beside it.
 */
function validateClusterNodes(raw: unknown, given: Record<string, unknown>): ClusterNode[] {
  const name = field('cluster_nodes');
  let list = raw;
  if (typeof list === 'string') list = list.trim().startsWith('[') ? coerce(name, { type: 'json', description: '' }, list) : list.split(',').map((s) => s.trim());
  if (!Array.isArray(list) || list.length === 0) throw invalidOption(name, 'must be a non-empty list of "host:port" strings');
  if (list.length > 1000) throw invalidOption(name, `must list at most 1000 nodes, got ${list.length}`);
  const nodes = list.map((entry, i): ClusterNode => {
    const m = typeof entry === 'string' ? /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/.exec(entry.trim()) : null;
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65535) throw invalidOption(`${name}[${i}]`, `must be "host:port" with a port 1-65535, got ${JSON.stringify(entry)}`);
    return { host: m[1].replace(/^\[|\]$/g, ''), port };
  });
  if (given.url !== undefined) throw invalidOption(field('url'), 'cannot be combined with cluster_nodes (the cluster is reached through its seed nodes)');
  const conn = given.connection;
  if (conn !== null && typeof conn === 'object' && !Array.isArray(conn)) {
    for (const key of ['url', 'host', 'port', 'sentinels', 'name'] as const) {
      if ((conn as Record<string, unknown>)[key] !== undefined) throw invalidOption(field(`connection.${key}`), 'cannot be combined with cluster_nodes (the cluster is reached through its seed nodes)');
    }
    const db = (conn as Record<string, unknown>).db;
    if (db !== undefined && Number(db) !== 0) throw invalidOption(field('connection.db'), `must be 0 with cluster_nodes (a Redis Cluster has one database), got ${JSON.stringify(db)}`);
  }
  return nodes;
}

/** Validates a queue config (an object, or a JSON string) once and freezes it. */
export function validateQueueConfig(input: unknown, overrides: Partial<QueueConfig> = {}): Readonly<QueueConfig> {
  let raw = input ?? {};
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch (err) {
      throw invalidOption('queue-config', `is not valid JSON (${(err as Error).message})`);
    }
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalidOption('queue-config', 'must be a JSON object');
  const given: Record<string, unknown> = { ...(raw as Record<string, unknown>), ...overrides };
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(given)) {
    if (!(key in fields)) {
      throw new MetaguardError('MG_ERR_UNKNOWN_OPTION', `${field(key)}: unknown key (known: ${Object.keys(fields).join(', ')})`, { field: field(key) });
    }
  }
  const backend = coerce(field('backend'), queueConfigSchema.backend, given.backend ?? 'memory') as BackendName;
  for (const [key, spec] of Object.entries(fields)) {
    const value = given[key];
    if (value === undefined) {
      if (spec.default !== undefined) out[key] = spec.default;
      continue;
    }
    if (spec.backends && !spec.backends.includes(backend)) {
      throw invalidOption(field(key), `is a ${spec.backends.join('/')} key, but backend is ${backend}`);
    }
    if (key === 'spawn_local_workers' && typeof value === 'boolean') {
      // Metamorphic Guard writes `"spawn_local_workers": true`: one local worker per thread.
      out[key] = value ? availableParallelism() : 0;
      continue;
    }
    if (key === 'connection') out[key] = validateConnection(value, backend);
    else if (key === 'cluster_nodes') out[key] = validateClusterNodes(value, given);
    else if (key === 'ssl') {
      const { on, tls } = validateTls(value, 'ssl');
      out[key] = tls ?? on;
    } else if (key === 'sasl') out[key] = validateSasl(value);
    else out[key] = coerce(field(key), spec, value);
  }
  for (const key of ['auto_commit', 'enable_auto_commit'] as const) {
    if (out[key] === true) warnOnce(`${field(key)} = true has no effect: metaguard commits a partition's offset only after the results of every batch below it are published (at-least-once)`);
  }
  if (out.session_timeout_ms !== undefined && given.heartbeat_timeout === undefined) out.heartbeat_timeout = (out.session_timeout_ms as number) / 1000;
  const weights = out.queue_weights as Record<string, unknown>;
  if (weights === null || typeof weights !== 'object' || Array.isArray(weights)) throw invalidOption(field('queue_weights'), `must be an object like ${JSON.stringify(QUEUE_WEIGHTS)}`);
  const filled: Record<string, number> = { ...QUEUE_WEIGHTS };
  for (const [name, w] of Object.entries(weights)) {
    // asynq-style weights name the normal queue `default`.
    const p = name === 'default' ? 'normal' : name;
    if (!priorities.includes(p as Priority)) throw invalidOption(field(`queue_weights.${name}`), `unknown priority (known: ${priorities.join(", ")}; "default" means normal)`);
    filled[p] = coerce(field(`queue_weights.${p}`), { type: 'number', min: 0, description: '' }, w) as number;
  }
  out.queue_weights = filled;
  if ((out.min_batch_size as number) > (out.max_batch_size as number)) {
    throw invalidOption(field('min_batch_size'), `must not exceed max_batch_size (${out.min_batch_size} > ${out.max_batch_size})`);
  }
  if (backend === 'redis' && out.connection === undefined) out.connection = validateConnection(out.url !== undefined ? { url: out.url } : {});
  if (backend === 'kafka' && out.bootstrap_servers === undefined) throw invalidOption(field('bootstrap_servers'), 'is required for backend kafka');
  if (out.queue_name !== undefined) {
    if (given.queue !== undefined && given.queue !== out.queue_name) throw invalidOption(field('queue_name'), `names the queue differently from queue (${JSON.stringify(out.queue_name)} vs ${JSON.stringify(given.queue)}): give one`);
    out.queue = out.queue_name;
  }
  if (backend === 'rabbitmq' && out.url !== undefined && out.connection !== undefined) throw invalidOption(field('url'), 'give url or connection, not both');
  if (backend === 'rabbitmq' && out.url !== undefined && !/^amqps?:\/\//.test(out.url as string)) throw invalidOption(field('url'), 'must be an amqp:// or amqps:// URL');
  if (backend === 'rabbitmq' && out.ssl !== undefined && !(typeof out.url === 'string' && out.url.startsWith('amqps://'))) throw invalidOption(field('ssl'), 'needs an amqps:// url (with connection, give connection.ssl)');
  if (backend === 'sqs') {
    // Auxiliary queues are named <name>-<kind>-<24 hex>: SQS allows 80 characters, so names stop at 50.
    const sqsName = /^[A-Za-z0-9_-]{1,50}$/;
    if (out.queue_url !== undefined && !(/^https?:\/\/[^/]+\/.+$/.test(out.queue_url as string) && sqsName.test((out.queue_url as string).replace(/\/+$/, '').split('/').pop()!))) {
      throw invalidOption(field('queue_url'), 'must be an http(s) SQS queue URL whose queue name is 1-50 letters, digits, _ and - (FIFO queues are not supported)');
    }
    if (out.queue_url === undefined && !sqsName.test(out.queue as string)) throw invalidOption(field(given.queue_name !== undefined ? 'queue_name' : 'queue'), 'an SQS queue name is 1-50 letters, digits, _ and - here (FIFO queues are not supported)');
    if ((out.aws_access_key_id === undefined) !== (out.aws_secret_access_key === undefined)) throw invalidOption(field(out.aws_access_key_id === undefined ? 'aws_access_key_id' : 'aws_secret_access_key'), 'aws_access_key_id and aws_secret_access_key go together');
    if (out.visibility_timeout !== undefined) {
      // The visibility timeout is the lease: the worker renews it as it renews every lease.
      if (given.lease_seconds !== undefined && Number(given.lease_seconds) !== out.visibility_timeout) throw invalidOption(field('visibility_timeout'), `is the lease on SQS; it differs from lease_seconds (${out.visibility_timeout} vs ${String(given.lease_seconds)}): give one`);
      out.lease_seconds = out.visibility_timeout;
    }
    if (out.endpoint_url !== undefined && !/^https?:\/\//.test(out.endpoint_url as string)) throw invalidOption(field('endpoint_url'), 'must be an http(s) URL');
  }
  if (!/^[A-Za-z0-9_.:-]{1,100}$/.test(out.queue as string)) throw invalidOption(field('queue'), 'must be 1-100 characters of letters, digits, _ . : -');
  return Object.freeze(out) as unknown as Readonly<QueueConfig>;
}

/**
 * `METAGUARD_BATCH_SIZE` (the line `metaguard bench` recommends) sets a fixed `batch_size` for
 * coordinators that run with that environment, unless the queue config sets `batch_size` itself.
 */
export function resolveQueueConfig(input: unknown, env: NodeJS.ProcessEnv, overrides: Partial<QueueConfig> = {}): Readonly<QueueConfig> {
  const fromEnv: Partial<QueueConfig> = {};
  const raw = env.METAGUARD_BATCH_SIZE;
  if (raw !== undefined && raw !== '') {
    fromEnv.batch_size = coerce('METAGUARD_BATCH_SIZE', { type: 'int', min: 1, max: 100_000, description: '' }, raw) as number;
  }
  const given = typeof input === 'string' ? (() => { try { return JSON.parse(input) as unknown; } catch { return input; } })() : input;
  const hasOwn = given !== null && typeof given === 'object' && 'batch_size' in (given as object);
  return validateQueueConfig(given, { ...(hasOwn ? {} : fromEnv), ...overrides });
}
