/** Backend factory: the only place that maps a queue config's `backend` to an implementation. */
import { invalidOption } from '../errors.js';
import type { QueueConfig } from '../options/queue.js';
import type { Logger } from '../observe/log.js';
import type { Backend } from './types.js';

export interface CreateBackendOptions {
  /** Receives `malformed_record` warnings for records read back that fail their schema. */
  logger?: Logger;
}

export async function createBackend(config: QueueConfig, options: CreateBackendOptions = {}): Promise<Backend> {
  switch (config.backend) {
    case 'memory': {
      const { MemoryBackend } = await import('./memory/backend.js');
      return new MemoryBackend(config);
    }
    case 'redis': {
      if (config.shards > 1) {
        const { ShardedBackend } = await import('./redis/sharded.js');
        return new ShardedBackend(config, options.logger ? { logger: options.logger } : {});
      }
      const { RedisBackend } = await import('./redis/backend.js');
      return new RedisBackend(config, options.logger ? { logger: options.logger } : {});
    }
    case 'kafka': {
      const { KafkaBackend } = await import('./kafka/backend.js');
      return new KafkaBackend(config, options.logger ? { logger: options.logger } : {});
    }
    case 'rabbitmq': {
      const { RabbitBackend } = await import('./rabbitmq/backend.js');
      return new RabbitBackend(config, options.logger ? { logger: options.logger } : {});
    }
    case 'sqs': {
      const { SqsBackend } = await import('./sqs/backend.js');
      return new SqsBackend(config, options.logger ? { logger: options.logger } : {});
    }
    default:
      throw invalidOption('queue-config.backend', `unknown backend ${String(config.backend)}`);
  }
}

/** Where a queue is, for messages: backend, address and queue name, never a password. */
export function describeQueue(config: QueueConfig): string {
  const name = `queue "${config.queue}"`;
  switch (config.backend) {
    case 'memory':
      return `${name} on the in-process memory backend`;
    case 'redis': {
      const url = config.url ?? config.connection?.url;
      if (url) {
        try {
          const u = new URL(url);
          return `${name} on redis ${u.hostname}:${u.port || 6379}`;
        } catch {
          return `${name} on redis (connection url)`;
        }
      }
      const c = config.connection;
      return `${name} on redis ${c?.host ?? '127.0.0.1'}:${c?.port ?? 6379}${c?.db ? `/${c.db}` : ''}`;
    }
    case 'kafka':
      return `topic "${config.topic ?? config.queue}" on kafka ${config.bootstrap_servers ?? 'localhost:9092'}`;
    default:
      return `${name} on ${config.backend}`;
  }
}
