/**
 * One AMQP connection of the RabbitMQ backend and its channels: the confirm channel that claims and
 * publishes (claims are unacknowledged deliveries on it), the admin channel that declares, and the
 * topology. Generations tell the backend which deliveries and consumers died with a channel or a
 * connection: `gen` changes with the claim channel, `connGen` with the connection.
 */
import { EventEmitter } from 'node:events';
import { connect as amqpConnect, type Channel, type ChannelModel, type ConfirmChannel, type Options } from 'amqplib';
import { MetaguardError } from '../../errors.js';
import type { Logger } from '../../observe/log.js';
import type { QueueConfig } from '../../options/queue.js';
import { tlsOptions } from '../tls.js';
import { priorities, type Priority } from '../types.js';
import { DELAY_STEPS_MS, describe, redactUrl } from './wire.js';

const CONNECT_TIMEOUT_MS = 5000;
/**
 * How long a new connection waits for the queue's streams to take writes. RabbitMQ answers a stream's
 * declaration before the stream's writer runs when another client created it a moment earlier (or
 * while a restarted node starts it again); a publish or a consumer on it then crashes the channel and
 * the broker closes the whole connection (541 INTERNAL_ERROR, or 506 "Stream not found"). Measured
 * here: ready 60-160 ms after creation.
 */
const STREAMS_READY_MS = 10_000;

/** `p`, or a rejection naming `what` once `ms` have passed (the late settlement of `p` is ignored). */
function settleWithin<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within the time left`)), Math.max(1, ms))));
  p.catch(() => {}); // settled after the race was lost: nothing waits for it
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

export interface RabbitNames {
  priority: Record<Priority, string>;
  dlq: string;
  jobs: string;
  workers: string;
  exchange: string;
  delay(ms: number): string;
  results(jobId: string): string;
}

export function rabbitNames(config: QueueConfig): RabbitNames {
  const q = config.queue;
  return {
    priority: Object.fromEntries(priorities.map((p) => [p, `${q}.${p}`])) as Record<Priority, string>,
    dlq: `${q}.dlq`,
    jobs: `${q}.jobs`,
    workers: `${q}.workers`,
    exchange: config.exchange ?? 'metaguard',
    delay: (ms) => `${q}.delay.${ms}`,
    results: (jobId) => `${q}.results.${jobId}`,
  };
}

export class RabbitConnection {
  readonly events = new EventEmitter();
  readonly names: RabbitNames;
  readonly q: string;
  readonly x: string;
  /** Routing key prefix of batches: `<rk>.<priority>`. Default: the queue's own name, so that queues sharing an exchange never receive each other's batches. */
  readonly rk: string;
  readonly durable: boolean;
  readonly target: string;
  conn: ChannelModel | undefined;
  ch: ConfirmChannel | undefined;
  admin: Channel | undefined;
  /** Generation of the claim channel: deliveries of an older one are gone. */
  gen = 0;
  /** Generation of the connection: consumers of an older one are gone. */
  connGen = 0;
  closed = false;
  #connecting: Promise<void> | undefined;
  /** The connection generation whose streams took a write (see #connectReady). */
  #streamsProven = -1;
  readonly #declared = new Set<string>();

  constructor(
    private readonly config: QueueConfig,
    readonly logger: Logger | undefined,
  ) {
    this.events.setMaxListeners(0);
    this.names = rabbitNames(config);
    this.q = config.queue;
    this.x = this.names.exchange;
    this.rk = config.routing_key ?? config.queue;
    this.durable = config.durable ?? true;
    const c = config.connection;
    this.target = config.url !== undefined ? redactUrl(config.url) : `${c?.ssl ? 'amqps' : 'amqp'}://${c?.host ?? '127.0.0.1'}:${c?.port ?? (c?.ssl ? 5671 : 5672)}${c?.virtual_host ? '/' + encodeURIComponent(c.virtual_host) : ''}`;
  }

  checkOpen(): void {
    if (this.closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `rabbitmq backend for queue ${this.q} is closed`);
  }

  /** Runs `fn` connected; a broker failure becomes MG_ERR_BACKEND naming the operation and the broker. */
  async run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.checkOpen();
    try {
      await this.ensure();
      return await fn();
    } catch (err) {
      if (err instanceof MetaguardError) throw err;
      if (this.closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `rabbitmq backend closed during ${op}`, { cause: err });
      throw new MetaguardError('MG_ERR_BACKEND', `rabbitmq ${op} failed (${this.target}, queue ${this.q}): ${describe(err)}`, { cause: err });
    }
  }

  /** Logs an error event of a channel or the connection (amqplib also closes it; `close` handles that). */
  onError(what: string): (err: Error) => void {
    return (err) => this.logger?.log('debug', 'backend_error', { code: 'MG_ERR_BACKEND', during: what, queue: this.q, message: describe(err) });
  }

  #connectOptions(): { url: string | Options.Connect; socket: Record<string, unknown> } {
    const c = this.config;
    const heartbeat = c.heartbeat ?? 10;
    const ssl = c.connection?.ssl ?? (c.url?.startsWith('amqps:') || c.ssl !== undefined);
    const settings = c.connection?.tls ?? (typeof c.ssl === 'object' ? c.ssl : undefined);
    const socket = { timeout: CONNECT_TIMEOUT_MS, ...(ssl ? tlsOptions(settings, c.connection ? 'queue-config.connection.ssl' : 'queue-config.ssl') : {}) };
    if (c.url !== undefined) {
      const u = new URL(c.url);
      if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(heartbeat));
      return { url: u.toString(), socket };
    }
    const conn = c.connection;
    return {
      url: {
        protocol: conn?.ssl ? 'amqps' : 'amqp',
        hostname: conn?.host ?? '127.0.0.1',
        port: conn?.port ?? (conn?.ssl ? 5671 : 5672),
        username: conn?.username ?? 'guest',
        password: conn?.password ?? 'guest',
        vhost: conn?.virtual_host ?? '/',
        heartbeat,
      },
      socket,
    };
  }

  async ensure(): Promise<void> {
    this.checkOpen();
    // Channels up is not enough: nothing uses the connection before its streams took a write.
    if (!this.#connecting && this.conn && this.ch && this.admin && this.#streamsProven === this.connGen) return;
    await (this.#connecting ??= this.#connectReady().finally(() => (this.#connecting = undefined)));
  }

  /**
   * Connects, declares the topology and proves the streams writable before anything else uses the
   * connection (see STREAMS_READY_MS): a marker record is appended to each (readers skip markers). A
   * connection the broker closes for a stream still starting holds nothing yet; it is opened again.
   */
  async #connectReady(): Promise<void> {
    const deadline = Date.now() + STREAMS_READY_MS;
    for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
      await this.#connect();
      if (this.#streamsProven === this.connGen) return;
      const gen = this.connGen;
      let failure: unknown;
      try {
        for (const stream of [this.names.jobs, this.names.workers]) {
          // A broker that blocks publishers (a memory or disk alarm) never confirms: bounded too.
          await settleWithin(this.publish('', stream, Buffer.alloc(0), { headers: { sync: 'connect' }, persistent: true }), deadline - Date.now(), `no confirm from ${stream}`);
        }
        if (gen === this.connGen) {
          this.#streamsProven = gen;
          return;
        }
      } catch (err) {
        this.checkOpen();
        failure = err;
      }
      // The broker closes the connection after failing the write: close it here too, then connect anew.
      const conn = this.conn;
      if (conn && gen === this.connGen) {
        await this.closeConnection(conn);
        // Its 'close' event normally did this; a close that timed out must not leave it in use.
        if (this.conn === conn) this.#lost();
      }
      this.checkOpen();
      if (Date.now() + delay > deadline) throw new Error(`the queue's streams (${this.names.jobs}, ${this.names.workers}) did not take writes within ${STREAMS_READY_MS} ms: ${describe(failure ?? 'the connection was lost')}`, { cause: failure });
      this.logger?.log('debug', 'backend_error', { code: 'MG_ERR_BACKEND', during: 'stream readiness', queue: this.q, retry_in_ms: delay, message: describe(failure ?? 'the connection was lost') });
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  async #connect(): Promise<void> {
    if (!this.conn) {
      let conn: ChannelModel;
      const { url, socket } = this.#connectOptions();
      try {
        conn = await amqpConnect(url, socket);
      } catch (err) {
        throw new MetaguardError('MG_ERR_BACKEND', `cannot connect to rabbitmq at ${this.target}: ${describe(err)}`, { cause: err });
      }
      conn.on('error', this.onError('connection'));
      conn.on('close', () => {
        if (this.conn === conn) this.#lost();
      });
      this.conn = conn;
      if (this.closed) {
        await this.closeConnection(conn);
        this.checkOpen();
      }
    }
    const conn = this.conn;
    if (!this.admin) {
      const admin = await conn.createChannel();
      admin.on('error', this.onError('admin channel'));
      admin.on('close', () => {
        if (this.admin === admin) this.admin = undefined;
      });
      this.admin = admin;
    }
    if (!this.ch) {
      const ch = await conn.createConfirmChannel();
      ch.on('error', this.onError('claim channel'));
      ch.on('close', () => {
        // Unacknowledged claims on this channel go back to the broker: they are no longer held here.
        if (this.ch === ch) this.#lostChannel();
      });
      this.ch = ch;
      await this.#topology();
    }
  }

  /** The connection is gone: every claim on it is lost (the broker requeues them). */
  #lost(): void {
    this.conn = undefined;
    this.connGen++;
    this.admin = undefined;
    this.#lostChannel();
    this.#declared.clear();
  }

  #lostChannel(): void {
    this.ch = undefined;
    this.gen++;
    this.events.emit('lost');
  }

  /** Closes `conn` within 2 s; a failure to close a connection that is going away anyway is logged. */
  async closeConnection(conn: ChannelModel): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const closing = conn.close().catch((err: unknown) => this.logger?.log('debug', 'backend_error', { code: 'MG_ERR_BACKEND', during: 'close connection', queue: this.q, message: describe(err) }));
    await Promise.race([closing, new Promise<void>((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  }

  /** Declares a queue; one declared elsewhere with other arguments is used as it is. */
  async declare(name: string, options: Options.AssertQueue): Promise<void> {
    if (this.#declared.has(name)) return;
    try {
      await this.admin!.assertQueue(name, options);
    } catch (err) {
      if ((err as { code?: number }).code !== 406) throw err;
      // PRECONDITION_FAILED closed the admin channel: reopen it and only check that the queue exists.
      this.admin = undefined;
      await this.#connect();
      await this.admin!.checkQueue(name);
    }
    this.#declared.add(name);
  }

  forget(name: string): void {
    this.#declared.delete(name);
  }

  async #topology(): Promise<void> {
    const a = this.admin!;
    const n = this.names;
    await a.assertExchange(this.x, 'direct', { durable: this.durable });
    await a.assertExchange(`${this.x}.dead`, 'direct', { durable: true });
    await a.assertExchange(`${this.x}.retry`, 'headers', { durable: true });
    await this.declare(n.dlq, { durable: true, arguments: { 'x-message-ttl': this.config.result_ttl_seconds * 1000 } });
    await this.admin!.bindQueue(n.dlq, `${this.x}.dead`, this.q);
    for (const p of priorities) {
      await this.declare(n.priority[p], { durable: this.durable, arguments: { 'x-dead-letter-exchange': `${this.x}.dead`, 'x-dead-letter-routing-key': this.q } });
      await this.admin!.bindQueue(n.priority[p], this.x, `${this.rk}.${p}`);
      await this.admin!.bindQueue(n.priority[p], `${this.x}.retry`, '', { 'x-match': 'all', priority: p, queue: this.q });
    }
    for (const ms of DELAY_STEPS_MS) {
      await this.declare(n.delay(ms), { durable: this.durable, arguments: { 'x-message-ttl': ms, 'x-dead-letter-exchange': `${this.x}.retry` } });
    }
    await this.declare(n.jobs, { durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': '7D' } });
    await this.declare(n.workers, { durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': '1h', 'x-stream-max-segment-size-bytes': 1_000_000 } });
  }

  /** Publishes through the confirm channel and waits for the broker's confirm. */
  publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): Promise<void> {
    const ch = this.ch;
    if (!ch) return Promise.reject(new Error('channel closed'));
    return new Promise<void>((resolve, reject) => {
      try {
        ch.publish(exchange, routingKey, content, { persistent: this.durable, ...options }, (err) => (err ? reject(err instanceof Error ? err : new Error(String(err ?? 'nacked by the broker'))) : resolve()));
      } catch (err) {
        reject(err);
      }
    });
  }

  /** A channel of its own (stream readers, the results consumer), `prefetch` deliveries at a time. */
  async channel(prefetch: number, what: string): Promise<{ ch: Channel; gen: number }> {
    await this.ensure();
    const ch = await this.conn!.createChannel();
    ch.on('error', this.onError(what));
    await ch.prefetch(prefetch);
    return { ch, gen: this.connGen };
  }

  /** Marks the connection closed and closes it (idempotent). */
  async shutdown(): Promise<void> {
    this.closed = true;
    this.events.emit('closed');
    const conn = this.conn;
    const ch = this.ch;
    this.conn = undefined;
    this.ch = undefined;
    this.admin = undefined;
    // The claim channel first: its close waits for the broker, so acknowledgements written just before
    // are processed (amqplib may still hold them when the connection closes: the batch would come back).
    if (ch) {
      let timer: NodeJS.Timeout | undefined;
      const closing = ch.close().catch((err: unknown) => this.logger?.log('debug', 'backend_error', { code: 'MG_ERR_BACKEND', during: 'close claim channel', queue: this.q, message: describe(err) }));
      await Promise.race([closing, new Promise<void>((r) => (timer = setTimeout(r, 2000)))]);
      clearTimeout(timer);
    }
    if (conn) await this.closeConnection(conn);
  }
}
