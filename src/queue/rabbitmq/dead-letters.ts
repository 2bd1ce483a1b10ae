/**
 * RabbitMQ's side of `queue stats` and `queue dlq list|retry|purge`: queue counts asked for side by
 * side on channels of their own, and the dead-letter queue read without acknowledging, so that what a
 * command does not take goes back to the broker in order.
 */
import type { Channel, ChannelModel, ConfirmChannel, GetMessage } from 'amqplib';
import type { Logger } from '../../observe/log.js';
import { logMalformed, MalformedRecord } from '../records.js';
import type { DeadEntry } from '../types.js';
import { deadEntryOf, describe, hstr, prioOf } from './wire.js';

const MAX_DLQ_SCAN = 10_000;

export interface AdminHost {
  connection(): ChannelModel;
  connectionGen(): number;
  run<T>(op: string, fn: () => Promise<T>): Promise<T>;
  readonly dlq: string;
  readonly exchange: string;
  readonly routingKey: string;
  readonly durable: boolean;
  readonly logger: Logger | undefined;
}

export class RabbitAdmin {
  /** Channels of their own for queue counts, so that stats() asks for them side by side. */
  #countChannels: { ch: Channel; gen: number }[] = [];

  constructor(private readonly host: AdminHost) {}

  #quiet(ch: Channel, what: string): void {
    // A 404 from checkQueue closes the channel with an error event: expected, said at debug level.
    ch.on('error', (err: Error) => this.host.logger?.log('debug', 'backend_error', { code: 'MG_ERR_BACKEND', during: what, message: describe(err) }));
  }

  async #counter(i: number): Promise<Channel> {
    const known = this.#countChannels[i];
    if (known && known.gen === this.host.connectionGen()) return known.ch;
    const ch = await this.host.connection().createChannel();
    this.#quiet(ch, 'queue counts');
    const entry = { ch, gen: this.host.connectionGen() };
    ch.on('close', () => {
      if (this.#countChannels[i] === entry) delete this.#countChannels[i];
    });
    this.#countChannels[i] = entry;
    return ch;
  }

  /** Ready messages of each queue (0 for a queue that does not exist), over four channels at once. */
  async counts(queues: string[]): Promise<number[]> {
    const lanes = 4;
    const out = new Array<number>(queues.length).fill(0);
    await Promise.all(
      Array.from({ length: lanes }, async (_, lane) => {
        for (let i = lane; i < queues.length; i += lanes) {
          try {
            out[i] = (await (await this.#counter(lane)).checkQueue(queues[i])).messageCount;
          } catch (err) {
            // A missing queue closed that channel (404): it counts 0 and the lane opens a new one.
            if ((err as { code?: number }).code !== 404) throw err;
          }
        }
      }),
    );
    return out;
  }

  /**
   * Reads every dead letter on a channel of its own (without acknowledging), hands them to `fn`, then
   * closes the channel: the broker puts back every message `fn` did not acknowledge, in order.
   */
  async #scan<T>(op: string, fn: (ch: ConfirmChannel, msgs: GetMessage[]) => Promise<T>): Promise<T> {
    return this.host.run(op, async () => {
      const ch = await this.host.connection().createConfirmChannel();
      this.#quiet(ch, op);
      try {
        const msgs: GetMessage[] = [];
        for (let i = 0; i < MAX_DLQ_SCAN; i++) {
          const m = await ch.get(this.host.dlq, { noAck: false });
          if (!m) break;
          msgs.push(m);
        }
        return await fn(ch, msgs);
      } finally {
        await ch.close().catch((err: unknown) => this.host.logger?.log('debug', 'backend_error', { code: 'MG_ERR_BACKEND', during: `${op}: close channel`, message: describe(err) }));
      }
    });
  }

  /** The dead letters' entries; one that is not metaguard's is skipped with `malformed_record`. */
  #entries(msgs: GetMessage[]): { m: GetMessage; e: DeadEntry }[] {
    const out: { m: GetMessage; e: DeadEntry }[] = [];
    for (const m of msgs) {
      try {
        out.push({ m, e: deadEntryOf(m) });
      } catch (err) {
        if (!(err instanceof MalformedRecord)) throw err;
        logMalformed(this.host.logger, err, { queue: this.host.dlq });
      }
    }
    return out;
  }

  async listDead(limit: number): Promise<DeadEntry[]> {
    const n = Math.floor(limit);
    if (!(n >= 1)) return [];
    const all = await this.#scan('list dead', async (_ch, msgs) => this.#entries(msgs).map((x) => x.e));
    return all.sort((a, b) => a.deadAt - b.deadAt).slice(0, n);
  }

  async retryDead(id?: string): Promise<number> {
    return this.#scan('retry dead', async (ch, msgs) => {
      let count = 0;
      for (const { m, e } of this.#entries(msgs)) {
        if (id !== undefined && e.id !== id) continue;
        if (m.content.length === 0 || !e.jobId || !e.role) continue;
        const h = m.properties.headers ?? {};
        const priority = prioOf(hstr(h, 'priority'));
        const mac = hstr(h, 'mac');
        await new Promise<void>((resolve, reject) =>
          ch.publish(this.host.exchange, `${this.host.routingKey}.${priority}`, m.content, { persistent: this.host.durable, messageId: e.id, headers: { id: e.id, job: e.jobId, role: e.role, priority, attempt: 0, ...(mac ? { mac } : {}) } }, (err) =>
            err ? reject(err instanceof Error ? err : new Error('nacked by the broker')) : resolve(),
          ),
        );
        ch.ack(m);
        count++;
      }
      return count;
    });
  }
}
