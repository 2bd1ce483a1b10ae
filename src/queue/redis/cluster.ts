/**
 * Redis Cluster client creation for the Redis backend (queue config `cluster_nodes`).
 *
 * Every key of a queue shares one hash tag (`mg:{<queue>}:…`), so one slot — one master and its
 * replicas — holds the whole queue, and its Lua scripts run there unchanged. ioredis' Cluster client
 * follows MOVED/ASK redirections, and after a failover (a replica promoted when its master stopped
 * answering for `cluster-node-timeout`) refreshes its slot map and re-sends the commands that failed
 * on the closed connection.
 *
 * Per-node options (credentials, TLS, client name) are the ones a single-node client would get: the
 * backend builds them once and hands them here, so whatever `connection` says applies to every node.
 */
import { Cluster, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { ClusterNode } from '../../options/queue.js';

/** Options the Cluster client owns itself and refuses in `redisOptions`. */
const CLUSTER_OWNED = ['host', 'port', 'path', 'sentinels', 'retryStrategy', 'enableOfflineQueue', 'readOnly', 'db', 'lazyConnect'] as const;

/**
 * A master failover takes `cluster-node-timeout` plus an election (a few seconds with the default
 * 15 s timeout, ~1-3 s with a low one). Commands that hit the closed connection of the failed master
 * are retried every `retryDelayOnFailover` ms up to `maxRedirections` times before they fail with
 * MG_ERR_BACKEND (which the coordinator and workers retry in turn).
 */
const RETRY_DELAY_ON_FAILOVER_MS = 200;
const MAX_REDIRECTIONS = 32;

export function createClusterClient(nodes: readonly ClusterNode[], nodeOptions: RedisOptions): Cluster {
  const redisOptions: Record<string, unknown> = { ...nodeOptions };
  for (const key of CLUSTER_OWNED) delete redisOptions[key];
  const options: ClusterOptions = {
    lazyConnect: true,
    enableOfflineQueue: true,
    enableReadyCheck: true,
    scaleReads: 'master', // leases, claims and result reads must see the master's state
    maxRedirections: MAX_REDIRECTIONS,
    retryDelayOnFailover: RETRY_DELAY_ON_FAILOVER_MS,
    retryDelayOnClusterDown: RETRY_DELAY_ON_FAILOVER_MS,
    retryDelayOnTryAgain: RETRY_DELAY_ON_FAILOVER_MS,
    slotsRefreshTimeout: 2000,
    slotsRefreshInterval: 5000,
    clusterRetryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 10), 2000),
    redisOptions: redisOptions as ClusterOptions['redisOptions'],
  };
  return new Cluster(
    nodes.map((n) => ({ host: n.host, port: n.port })),
    options,
  );
}

/** A second Cluster client on the same seeds (blocking reads must not stall the main connections). */
export function duplicateCluster(client: Cluster, connectionName: string): Cluster {
  return client.duplicate([], { redisOptions: { ...client.options.redisOptions, connectionName } });
}
