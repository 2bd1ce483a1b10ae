/**
 * Connections of the Redis backend: the client for a queue config (one node, Sentinel or Cluster,
 * with the credentials and TLS of `connection`), what to call its target in messages (never with a
 * password), and the memory facts (INFO memory) behind the out-of-memory error and the eviction
 * policy warning.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { MetaguardError } from '../../errors.js';
import type { QueueConfig } from '../../options/queue.js';
import type { BackendNotice } from '../types.js';
import { tlsOptions } from '../tls.js';
import { createClusterClient, duplicateCluster } from './cluster.js';

/**
 * A single-node client or a Cluster client (queue config `cluster_nodes`). Cluster exposes the same
 * command surface; every command the backend sends names keys of one hash tag, so it runs on one master.
 */
export type RedisClient = Redis;

export const CONNECT_TIMEOUT_MS = 5000;

/** A client for `config` (lazy: `connect()` opens it), reporting connection errors to `onError`. */
export function createRedisClient(config: QueueConfig, connectionName: string, onError: (err: Error) => void): RedisClient {
  const conn = config.connection;
  const base: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: true,
    // A command survives ~30 s of reconnect attempts (a Redis restart), then fails with MG_ERR_BACKEND.
    maxRetriesPerRequest: 20,
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 10), 2000),
    connectTimeout: CONNECT_TIMEOUT_MS,
    connectionName,
  };
  // Credentials and transport (ACL user, TLS files, Sentinel) apply to every connection.
  const auth: RedisOptions = {};
  if (conn?.username !== undefined) auth.username = conn.username;
  if (conn?.password !== undefined) auth.password = conn.password;
  if (conn?.ssl) auth.tls = tlsOptions(conn.tls, 'queue-config.connection.ssl');
  let client: RedisClient;
  const url = conn?.url ?? config.url;
  if (config.cluster_nodes !== undefined) {
    client = createClusterClient(config.cluster_nodes, { ...base, ...auth }) as unknown as RedisClient;
  } else if (conn?.sentinels) {
    const opts: RedisOptions = { ...base, ...auth, sentinels: conn.sentinels, name: conn.name!, db: conn.db };
    if (conn.sentinel_password !== undefined) opts.sentinelPassword = conn.sentinel_password;
    if (conn.ssl) {
      opts.enableTLSForSentinelMode = true;
      opts.sentinelTLS = auth.tls!;
    }
    client = new Redis(opts);
  } else if (url !== undefined) {
    client = new Redis(url, { ...base, ...auth });
  } else {
    client = new Redis({ ...base, ...auth, host: conn?.host ?? '127.0.0.1', port: conn?.port ?? 6379, db: conn?.db ?? 0 });
  }
  client.on('error', onError);
  return client;
}

/** A second connection like `client` (blocking reads must not stall the main one). */
export function duplicateClient(client: RedisClient, connectionName: string, onError: (err: Error) => void): RedisClient {
  const conn = client instanceof Cluster ? (duplicateCluster(client, connectionName) as unknown as RedisClient) : client.duplicate({ connectionName });
  conn.on('error', onError);
  return conn;
}

/** The server(s) `config` names, for messages: a URL's credentials are masked. */
export function describeTarget(config: QueueConfig): string {
  const url = config.connection?.url ?? config.url;
  const cluster = config.cluster_nodes;
  if (cluster !== undefined) return `cluster ${cluster.map((n) => `${n.host}:${n.port}`).join(',')}`;
  if (url !== undefined) return url.replace(/\/\/[^@/]*@/, '//***@');
  return `${config.connection?.host ?? '127.0.0.1'}:${config.connection?.port ?? 6379}`;
}

/** True for Redis's refusal of a write over `maxmemory` (also when hidden behind a MULTI's EXECABORT). */
export function isOom(err: unknown): boolean {
  const e = err as { message?: unknown; previousErrors?: unknown[] };
  if (typeof e?.message === 'string' && /\bOOM command not allowed\b/.test(e.message)) return true;
  return Array.isArray(e?.previousErrors) && e.previousErrors.some(isOom);
}

export interface MemoryInfo {
  used: string;
  maxmemory: string;
  policy: string;
}

/** INFO memory (readable without CONFIG rights): used memory, maxmemory and the eviction policy. */
export async function readMemoryInfo(client: RedisClient): Promise<MemoryInfo> {
  const text = await client.info('memory');
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '?';
  return { used: field('used_memory_human'), maxmemory: `${field('maxmemory')} bytes (${field('maxmemory_human')})`, policy: field('maxmemory_policy') };
}

/** MG_ERR_BACKEND_OOM for a write Redis refused during `op`, with the memory facts when known. */
export function oomError(queue: string, op: string, err: unknown, mem: MemoryInfo | undefined): MetaguardError {
  const detail = mem ? `used_memory ${mem.used}, maxmemory ${mem.maxmemory}, maxmemory-policy ${mem.policy}` : 'maxmemory and maxmemory-policy could not be read';
  return new MetaguardError(
    'MG_ERR_BACKEND_OOM',
    `redis is out of memory: it refused ${op} (queue ${queue}; ${detail}). Raise maxmemory, free memory, or shorten result_ttl_seconds`,
    { cause: err },
  );
}

/** The warning for an eviction policy other than noeviction (Redis may then drop batches, leases and results). */
export function evictionNotices(mem: MemoryInfo | undefined): BackendNotice[] {
  if (!mem || mem.policy === 'noeviction' || mem.policy === '?') return [];
  return [
    {
      event: 'redis_eviction_policy',
      message: `redis maxmemory-policy is ${mem.policy} (maxmemory ${mem.maxmemory}): under memory pressure Redis may evict batches, leases and results; use noeviction`,
      policy: mem.policy,
      maxmemory: mem.maxmemory,
    },
  ];
}
