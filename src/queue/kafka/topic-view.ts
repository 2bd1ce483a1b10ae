/**
 * A topic view: a private consumer (a consumer group of its own, nothing committed) that reads one
 * topic into the backend's local state — the coordinator's results, the jobs/artifacts, heartbeats
 * and dead letters. A record the view's handler cannot read is skipped and reported (`onSkip`: the
 * backend logs it as `malformed_record`); it never stops the view.
 */
import { EventEmitter } from 'node:events';
import type { Admin, Consumer, Kafka, KafkaMessage } from 'kafkajs';

export interface ViewOptions {
  kafka: Kafka;
  admin: () => Promise<Admin>;
  topic: string;
  groupId: string;
  /** Where to start per partition; partitions not listed start at their low watermark. */
  start: Map<number, bigint> | 'beginning';
  onRecord(partition: number, message: KafkaMessage): void;
  /** A record `onRecord` threw for: skipped. */
  onSkip(partition: number, message: KafkaMessage, err: unknown): void;
  /** Leaving the broker failed (`during` says when): nothing to retry, the connection is dropped. */
  onDisconnectFailed(during: string, err: unknown): void;
  consumerConfig: { sessionTimeout: number; heartbeatInterval: number; maxWaitTimeInMs: number };
}

export class TopicView extends EventEmitter {
  readonly topic: string;
  readonly #options: ViewOptions;
  /** Next offset to process, per partition. */
  readonly #positions = new Map<number, bigint>();
  #consumer: Consumer | undefined;
  #starting: Promise<void> | undefined;
  #stopped = false;
  #generation = 0;

  constructor(options: ViewOptions) {
    super();
    this.setMaxListeners(0);
    this.topic = options.topic;
    this.#options = options;
  }

  /** Starts (or, after its consumer failed, restarts) reading; resolves once it has joined. */
  start(): Promise<void> {
    if (this.#stopped) return Promise.reject(new Error(`the reader of ${this.topic} is stopped`));
    return (this.#starting ??= this.#start().catch((err) => {
      this.#starting = undefined;
      throw err;
    }));
  }

  async #disconnect(consumer: Consumer, during: string): Promise<void> {
    try {
      await consumer.disconnect();
    } catch (err) {
      this.#options.onDisconnectFailed(during, err);
    }
  }

  async #start(): Promise<void> {
    const o = this.#options;
    const offsets = await (await o.admin()).fetchTopicOffsets(o.topic);
    for (const { partition, low } of offsets) {
      if (this.#positions.has(partition)) continue; // a restart goes on from where this view is
      const from = o.start === 'beginning' ? undefined : o.start.get(partition);
      this.#positions.set(partition, from !== undefined && from > BigInt(low) ? from : BigInt(low));
    }
    // A group of its own (new on each restart, so it never waits for a dead predecessor's session).
    const consumer = o.kafka.consumer({ groupId: `${o.groupId}.${++this.#generation}`, allowAutoTopicCreation: true, ...o.consumerConfig });
    this.#consumer = consumer;
    consumer.on(consumer.events.CRASH, (e) => {
      if (e.payload.restart || this.#consumer !== consumer) return;
      // kafkajs gave up on it: the next start() (every read calls it) makes a new one.
      this.#consumer = undefined;
      this.#starting = undefined;
      void this.#disconnect(consumer, `the reader of ${o.topic} crashed`);
    });
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      // Every (re)join starts from the committed offsets, and a view commits none: seek back to where
      // this view is. Seeks apply on the next fetch.
      for (const p of e.payload.memberAssignment[o.topic] ?? []) {
        const at = this.#positions.get(p);
        if (at !== undefined) consumer.seek({ topic: o.topic, partition: p, offset: at.toString() });
      }
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [o.topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          if (this.#consumer !== consumer) return;
          const p = batch.partition;
          for (const m of batch.messages) {
            const off = BigInt(m.offset);
            if (off < (this.#positions.get(p) ?? 0n)) continue;
            try {
              o.onRecord(p, m);
            } catch (err) {
              o.onSkip(p, m, err);
            }
            this.#positions.set(p, off + 1n);
          }
          this.emit('progress');
        },
      });
    } catch (err) {
      if (this.#consumer === consumer) this.#consumer = undefined;
      await this.#disconnect(consumer, `the reader of ${o.topic} failed to start`);
      throw err;
    }
    if (this.#stopped) await this.#disconnect(consumer, `the reader of ${o.topic} stopped while starting`);
  }

  /** Next offset this view will process per partition (what it has read so far). */
  position(partition: number): bigint | undefined {
    return this.#positions.get(partition);
  }

  /**
   * Waits until everything appended to the topic before this call has been read. Returns false when
   * `timeoutMs` passed first.
   */
  async catchUp(timeoutMs: number): Promise<boolean> {
    await this.start();
    const highs = (await (await this.#options.admin()).fetchTopicOffsets(this.topic)).map((o) => ({ partition: o.partition, high: BigInt(o.high) }));
    const behind = () => highs.some(({ partition, high }) => (this.#positions.get(partition) ?? 0n) < high);
    if (!behind()) return true;
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.off('progress', check);
        this.off('stopped', stopped);
        resolve(ok);
      };
      const check = () => {
        if (!behind()) done(true);
      };
      const stopped = () => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.on('progress', check);
      this.on('stopped', stopped);
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.emit('stopped');
    const consumer = this.#consumer;
    if (consumer) await this.#disconnect(consumer, `the reader of ${this.topic} stopped`);
  }
}
