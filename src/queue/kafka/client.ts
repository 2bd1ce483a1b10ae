/**
 * The Kafka backend's connection plumbing: the kafkajs client (TLS, SASL), one producer and one admin
 * client shared by every part of the backend, topic views, and the error mapping every operation goes
 * through (`run`: MG_ERR_BACKEND naming the brokers and topic, MG_ERR_BACKEND_CLOSED after close).
 *
 * Failures that nothing can retry (leaving the broker, a best-effort topic creation) are not thrown:
 * they are logged as `backend_error` with their code and what was being done (`failed`).
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Kafka, logLevel as KafkaLogLevel, Partitioners, type Admin, type KafkaMessage, type Message, type Producer, type RecordMetadata, type SASLOptions } from 'kafkajs';
import { MetaguardError } from '../../errors.js';
import type { Level, Logger } from '../../observe/log.js';
import type { QueueConfig } from '../../options/queue.js';
import { logMalformed, MalformedRecord } from '../records.js';
import { tlsOptions } from '../tls.js';
import { TopicView } from './topic-view.js';
import { describe, recordName, withTimeout } from './wire.js';
import { stopIdlePolling } from './idle-poll.js';

stopIdlePolling();

export const DEFAULT_CONSUMER_GROUP = 'metaguard-workers';

export interface Topics {
  batches: string;
  results: string;
  jobs: string;
  workers: string;
  dlq: string;
}

export interface ClientOptions {
  clientId?: string;
  logLevel?: 'nothing' | 'error' | 'warn' | 'info' | 'debug';
  catchUpTimeoutMs?: number;
  logger?: Logger;
}

const levels = { nothing: KafkaLogLevel.NOTHING, error: KafkaLogLevel.ERROR, warn: KafkaLogLevel.WARN, info: KafkaLogLevel.INFO, debug: KafkaLogLevel.DEBUG } as const;

/**
 * True when `err` or one of its causes is kafkajs's SASL authentication failure — by the error's class
 * name (kafkajs sets it; its error classes are not reachable as ESM named exports), never its text.
 */
export function saslRefused(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e.name === 'KafkaJSSASLAuthenticationError') return true;
  }
  return false;
}

export class KafkaClient {
  readonly kafka: Kafka;
  readonly brokers: string[];
  readonly topics: Readonly<Topics>;
  readonly group: string;
  readonly consumerConfig: { sessionTimeout: number; heartbeatInterval: number; maxWaitTimeInMs: number; rebalanceTimeout: number };
  readonly #options: ClientOptions;
  #producer: Producer | undefined;
  #admin: Admin | undefined;
  #connecting: Promise<void> | undefined;
  /** Where T.results ended when this client connected (the coordinator reads from there). */
  resultsStart: Map<number, bigint> | undefined;
  closed = false;

  constructor(config: QueueConfig, options: ClientOptions) {
    this.#options = options;
    const servers = config.bootstrap_servers ?? '';
    this.brokers = servers.split(',').map((s) => s.trim()).filter(Boolean);
    if (this.brokers.length === 0) throw new MetaguardError('MG_ERR_INVALID_OPTION', 'queue-config.bootstrap_servers: is required for backend kafka', { field: 'queue-config.bootstrap_servers' });
    const base = config.topic ?? config.queue;
    this.topics = { batches: base, results: `${base}.results`, jobs: `${base}.jobs`, workers: `${base}.workers`, dlq: `${base}.dlq` };
    this.group = config.consumer_group ?? DEFAULT_CONSUMER_GROUP;
    const sessionTimeout = Math.max(1000, Math.round(config.heartbeat_timeout * 1000));
    const heartbeatInterval = Math.max(100, Math.min(Math.round(config.heartbeat_check_interval * 1000), Math.floor(sessionTimeout / 3)));
    this.consumerConfig = {
      sessionTimeout,
      heartbeatInterval,
      // Heartbeats go out between fetches: a long-poll must stay well inside the session.
      maxWaitTimeInMs: Math.max(100, Math.min(1000, heartbeatInterval)),
      rebalanceTimeout: Math.max(60_000, sessionTimeout),
    };
    const level = levels[options.logLevel ?? 'nothing'];
    this.kafka = new Kafka({
      clientId: options.clientId ?? `metaguard-${hostname()}`,
      brokers: this.brokers,
      connectionTimeout: 3000,
      requestTimeout: 30_000,
      ...(config.ssl === undefined || config.ssl === false ? {} : { ssl: config.ssl === true ? true : tlsOptions(config.ssl, 'queue-config.ssl') }),
      ...(config.sasl ? { sasl: config.sasl as SASLOptions } : {}),
      retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 8 },
      logLevel: level,
      logCreator: () => (entry) => {
        if (entry.level <= level && level !== KafkaLogLevel.NOTHING) process.stderr.write(JSON.stringify({ kafkajs: entry.namespace, level: entry.label, message: entry.log.message }) + '\n');
      },
    });
  }

  get logger(): Logger | undefined {
    return this.#options.logger;
  }

  /** Logs a failure nothing retries: `backend_error` with its code and what was being done. */
  failed(during: string, err: unknown, level: Level = 'warn'): void {
    const code = err instanceof MetaguardError ? err.code : 'MG_ERR_BACKEND';
    this.#options.logger?.log(level, 'backend_error', { backend: 'kafka', code, during, message: describe(err), topic: this.topics.batches });
  }

  /** Logs a record a reader skipped (`malformed_record`), with what skipping it means. */
  skipped(topic: string, partition: number, m: KafkaMessage, err: unknown, consequence: string): void {
    const malformed = err instanceof MalformedRecord ? err : new MalformedRecord(`record ${recordName(topic, partition, m.offset)}`, 'record', `could not be read: ${describe(err)}`);
    logMalformed(this.#options.logger, malformed, { topic, consequence });
  }

  checkOpen(): void {
    if (this.closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `kafka backend for topic ${this.topics.batches} is closed`);
  }

  /** Runs `fn` as operation `op`: its failure becomes MG_ERR_BACKEND (or MG_ERR_BACKEND_CLOSED). */
  async run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.checkOpen();
    try {
      return await fn();
    } catch (err) {
      if (err instanceof MetaguardError) throw err;
      if (this.closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `kafka backend closed during ${op}`, { cause: err });
      throw new MetaguardError('MG_ERR_BACKEND', `kafka ${op} failed (${this.brokers.join(',')}, topic ${this.topics.batches}): ${describe(err)}`, { cause: err });
    }
  }

  async admin(): Promise<Admin> {
    await this.ensureConnected();
    return this.#admin!;
  }

  async ensureConnected(): Promise<void> {
    this.checkOpen();
    await (this.#connecting ??= this.#connect().catch((err) => {
      this.#connecting = undefined;
      throw err;
    }));
  }

  /**
   * Connects, mapping refused credentials to MG_ERR_BACKEND_AUTH (a configuration error: the worker
   * exits 78). Decided on kafkajs's error class (KafkaJSSASLAuthenticationError: the broker answered
   * SaslAuthenticate with a failure), never on message text: a broker that does not speak SASL at
   * all, or a TLS handshake that fails, stays MG_ERR_BACKEND.
   */
  async connect(): Promise<void> {
    try {
      await this.ensureConnected();
    } catch (err) {
      if (saslRefused(err)) throw new MetaguardError('MG_ERR_BACKEND_AUTH', `kafka at ${this.brokers.join(',')} refused the credentials (queue-config.sasl): ${(err as Error).message}`, { cause: err, field: 'queue-config.sasl' });
      throw err;
    }
  }

  async #connect(): Promise<void> {
    const producer = this.kafka.producer({ allowAutoTopicCreation: true, createPartitioner: Partitioners.DefaultPartitioner });
    const admin = this.kafka.admin();
    try {
      await Promise.all([producer.connect(), admin.connect()]);
    } catch (err) {
      await Promise.all([this.#disconnect(producer, 'connect failed'), this.#disconnect(admin, 'connect failed')]);
      throw new MetaguardError('MG_ERR_BACKEND', `cannot connect to kafka at ${this.brokers.join(',')}: ${describe(err)}`, { cause: err });
    }
    this.#producer = producer;
    this.#admin = admin;
    // Best effort: brokers that refuse CreateTopics (or auto-create on metadata, like librdkafka's
    // mock) are fine; partition counts are the operator's.
    await withTimeout(
      admin.createTopics({ waitForLeaders: true, topics: Object.values(this.topics).map((topic) => ({ topic })) }).catch((err: unknown) => {
        this.failed('create topics (left to the broker: auto-creation or the operator)', err, 'debug');
        return false;
      }),
      5000,
      false,
    );
    // Results produced from here on are readable by readResults: capture where the topic ends now,
    // before this process can enqueue anything.
    try {
      const ends = await admin.fetchTopicOffsets(this.topics.results);
      this.resultsStart = new Map(ends.map((o) => [o.partition, BigInt(o.high)]));
    } catch (err) {
      throw new MetaguardError('MG_ERR_BACKEND', `kafka: cannot read the offsets of ${this.topics.results} (does the topic exist?): ${describe(err)}`, { cause: err });
    }
  }

  async #disconnect(client: { disconnect(): Promise<void> }, during: string): Promise<void> {
    try {
      await client.disconnect();
    } catch (err) {
      this.failed(`disconnect (${during})`, err);
    }
  }

  /** Leaves the broker (logged, never thrown: there is nothing left to retry). */
  disconnect(client: { disconnect(): Promise<void> }, during: string, timeoutMs: number): Promise<void> {
    return withTimeout(this.#disconnect(client, during), timeoutMs, undefined);
  }

  /** Produces `messages` (acks from every in-sync replica); returns where each partition's first landed. */
  async send(op: string, topic: string, messages: Message[]): Promise<RecordMetadata[]> {
    return this.run(op, async () => {
      await this.ensureConnected();
      return this.#producer!.send({ topic, acks: -1, messages });
    });
  }

  /** A topic view with a group of its own; records it cannot read are logged with `consequence`. */
  view(topic: string, purpose: string, start: Map<number, bigint> | 'beginning', onRecord: (p: number, m: KafkaMessage) => void, consequence: string): TopicView {
    return new TopicView({
      kafka: this.kafka,
      admin: () => this.admin(),
      topic,
      groupId: `${this.group}.${purpose}.${randomUUID()}`,
      start,
      onRecord,
      onSkip: (p, m, err) => this.skipped(topic, p, m, err, consequence),
      onDisconnectFailed: (during, err) => this.failed(`disconnect (${during})`, err),
      consumerConfig: {
        sessionTimeout: this.consumerConfig.sessionTimeout,
        heartbeatInterval: this.consumerConfig.heartbeatInterval,
        maxWaitTimeInMs: this.consumerConfig.maxWaitTimeInMs,
      },
    });
  }

  get catchUpMs(): number {
    return this.#options.catchUpTimeoutMs ?? 15_000;
  }

  /** Waits until `view` has read everything appended before this call (MG_ERR_BACKEND past catchUpMs). */
  async caughtUp(view: TopicView, what: string): Promise<void> {
    const ok = await this.run(`read ${what}`, () => view.catchUp(this.catchUpMs));
    this.checkOpen();
    if (!ok) throw new MetaguardError('MG_ERR_BACKEND', `kafka: reading ${view.topic} did not catch up within ${this.catchUpMs} ms (${what})`);
  }

  /** Disconnects the producer and the admin client (after the views and the group member left). */
  async closeConnections(): Promise<void> {
    await Promise.all([
      this.#producer ? this.disconnect(this.#producer, 'close', 5000) : undefined,
      this.#admin ? this.disconnect(this.#admin, 'close', 5000) : undefined,
    ]);
  }
}
