/**
 * A RabbitMQ stream (x-queue-type stream) read from its first offset into the owner's local state:
 * manifests, artifacts and heartbeats are appended to streams and every process keeps its own view.
 * `catchUp` appends a marker and waits until it has been read, so a reader sees everything appended
 * before the call.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Channel, ConsumeMessage, Options } from 'amqplib';
import type { Logger } from '../../observe/log.js';
import { MalformedRecord, logMalformed } from '../records.js';
import { describe, hstr } from './wire.js';

export interface StreamHost {
  channel(prefetch: number): Promise<{ ch: Channel; gen: number }>;
  currentGen(): number;
  publishTo(queue: string, content: Buffer, options: Options.Publish): Promise<void>;
  readonly logger: Logger | undefined;
}

export class StreamView extends EventEmitter {
  #ch: Channel | undefined;
  #gen = -1;
  #next: number | undefined;
  #starting: Promise<void> | undefined;
  /** Markers this view's own catchUp calls wait for, and those of them read already. Others' markers are skipped, never kept. */
  readonly #awaited = new Set<string>();
  readonly #seen = new Set<string>();

  #stopped = false;

  /** Reads `stream` from `from` (an offset), or from its first record. */
  constructor(
    readonly stream: string,
    private readonly backend: StreamHost,
    from: number | undefined,
    private readonly onMessage: (msg: ConsumeMessage) => void,
  ) {
    super();
    this.setMaxListeners(0);
    this.#next = from;
  }

  start(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#ch && this.#gen === this.backend.currentGen()) return Promise.resolve();
    return (this.#starting ??= this.#start().finally(() => (this.#starting = undefined)));
  }

  async #start(): Promise<void> {
    const old = this.#ch;
    this.#ch = undefined;
    // A channel of a connection that died is closed already; closing it again fails harmlessly.
    if (old) this.#close(old);
    const { ch, gen } = await this.backend.channel(500);
    if (this.#stopped) {
      // stop() came while the channel was being opened: it is closed, not left consuming.
      this.#close(ch);
      return;
    }
    this.#ch = ch;
    this.#gen = gen;
    ch.on('close', () => {
      if (this.#ch === ch) this.#ch = undefined;
    });
    const offset = this.#next === undefined ? 'first' : this.#next;
    await ch.consume(
      this.stream,
      (msg) => {
        if (!msg) return;
        const off = Number(msg.properties.headers?.['x-stream-offset']);
        try {
          if (!(Number.isFinite(off) && this.#next !== undefined && off < this.#next)) {
            const sync = hstr(msg.properties.headers, 'sync');
            if (sync !== undefined) {
              if (this.#awaited.has(sync)) this.#seen.add(sync);
            } else this.onMessage(msg);
          }
        } catch (err) {
          // A record this view cannot read is skipped (it must not stop the view), and said so.
          const bad = err instanceof MalformedRecord ? err : new MalformedRecord(`${this.stream} record at offset ${off}`, 'content', describe(err));
          logMalformed(this.backend.logger, bad, { stream: this.stream });
        }
        if (Number.isFinite(off)) this.#next = off + 1;
        try {
          ch.ack(msg);
        } catch (err) {
          // The channel is gone (amqplib throws synchronously): the next start() resumes from #next.
          this.backend.logger?.log('debug', 'backend_error', { code: 'MG_ERR_BACKEND', during: `acknowledge a ${this.stream} record`, message: describe(err) });
        }
        this.emit('progress');
      },
      { noAck: false, arguments: { 'x-stream-offset': offset } },
    );
  }

  /** Waits until everything appended before this call has been read (false: not within `ms`). */
  async catchUp(ms: number): Promise<boolean> {
    await this.start();
    if (this.#stopped) return false;
    const id = randomUUID();
    this.#awaited.add(id);
    try {
      await this.backend.publishTo(this.stream, Buffer.alloc(0), { headers: { sync: id }, persistent: true });
    } catch (err) {
      this.#awaited.delete(id);
      throw err;
    }
    if (this.#seen.delete(id)) {
      this.#awaited.delete(id);
      return true;
    }
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.off('progress', check);
        this.off('stopped', stop);
        this.#awaited.delete(id);
        this.#seen.delete(id);
        resolve(ok);
      };
      const check = () => {
        if (this.#seen.delete(id)) done(true);
      };
      const stop = () => done(false);
      const timer = setTimeout(() => done(false), ms);
      this.on('progress', check);
      this.on('stopped', stop);
    });
  }

  /** Closes a reader channel; one of a connection that died is closed already, and failing to close it again is logged. */
  #close(ch: Channel): void {
    void ch.close().catch((err: unknown) => this.backend.logger?.log('debug', 'backend_error', { code: 'MG_ERR_BACKEND', during: `close ${this.stream} reader`, message: describe(err) }));
  }

  /** Markers held in memory (only those this view's pending catchUp calls wait for). */
  get markersHeld(): number {
    return this.#seen.size + this.#awaited.size;
  }

  /** Stops reading: pending catch-ups return false and the reader's channel is closed. */
  stop(): void {
    this.#stopped = true;
    this.emit('stopped');
    const ch = this.#ch;
    this.#ch = undefined;
    if (ch) this.#close(ch);
  }
}

