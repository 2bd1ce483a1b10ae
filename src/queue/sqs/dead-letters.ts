/**
 * SQS's side of `queue dlq list|retry|purge`: the dead-letter queue is received in full (each message
 * hidden for 60 s while a command looks at it) and what the command does not delete is made visible
 * again at once. A message that is not one of metaguard's dead letters is listed by what SQS knows of
 * it (a redrive-policy move) or skipped with `malformed_record`.
 */
import { ChangeMessageVisibilityBatchCommand, ChangeMessageVisibilityCommand, GetQueueAttributesCommand, SendMessageCommand, type Message, type MessageAttributeValue } from '@aws-sdk/client-sqs';
import type { Role } from '../../core/protocol.js';
import { wireError } from '../../errors.js';
import { isRecordId, logMalformed, MalformedRecord, parseWireError } from '../records.js';
import type { DeadEntry } from '../types.js';
import { attr, num, type SqsClientHost } from './client.js';

const MAX_DLQ_SCAN = 5000;
const roleSet = new Set<string>(['baseline', 'candidate']);

/** A dead letter as `queue dlq list` shows it. Throws MalformedRecord for one without a batch id. */
export function deadEntryOf(m: Message): DeadEntry {
  const id = attr(m, 'id') ?? m.Body;
  if (!isRecordId(id)) throw new MalformedRecord(`dead letter ${m.MessageId ?? ''}`, 'id', 'must be a batch id');
  const count = (v: string | undefined) => {
    const n = Number(v);
    return Number.isInteger(n) && n >= 0 && n <= 1_000_000 ? n : 0;
  };
  const e: DeadEntry = {
    id,
    error: attr(m, 'reason') !== undefined ? parseWireError(attr(m, 'reason')!) : wireError('MG_ERR_LEASE_EXPIRED', 'moved by the queue\'s redrive policy (received too often)'),
    attempts: count(attr(m, 'attempts') ?? m.Attributes?.ApproximateReceiveCount),
    deadAt: Math.max(0, Math.min(8.64e15, Number(attr(m, 'dead_at') ?? m.Attributes?.SentTimestamp ?? 0) || 0)),
  };
  const job = attr(m, 'job');
  const role = attr(m, 'role');
  if (isRecordId(job)) e.jobId = job;
  if (role && roleSet.has(role)) e.role = role as Role;
  return e;
}

export class SqsDeadLetters {
  constructor(private readonly c: SqsClientHost) {}

  /**
   * Receives every dead letter (hidden for 60 s while scanning), hands them to `fn`, and makes the ones
   * `fn` did not delete visible again.
   */
  async #scan<T>(op: string, fn: (msgs: Message[]) => Promise<{ value: T; deleted: Set<Message> }>): Promise<T> {
    return this.c.run(op, async () => {
      const dlq = this.c.dlqUrl!;
      const msgs: Message[] = [];
      for (;;) {
        const got = await this.c.receive(dlq, 10, 60, 0);
        if (!got.length || msgs.length >= MAX_DLQ_SCAN) break;
        msgs.push(...got);
      }
      try {
        const { value, deleted } = await fn(msgs);
        const back = msgs.filter((m) => !deleted.has(m)).map((m) => m.ReceiptHandle!);
        for (let i = 0; i < back.length; i += 10) {
          const chunk = back.slice(i, i + 10);
          await this.c.send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: dlq, Entries: chunk.map((r, j) => ({ Id: String(j), ReceiptHandle: r, VisibilityTimeout: 0 })) }));
        }
        return value;
      } catch (err) {
        // Best effort: what cannot be made visible now becomes visible when its 60 s run out.
        const undo = await Promise.allSettled(msgs.map((m) => this.c.send(new ChangeMessageVisibilityCommand({ QueueUrl: dlq, ReceiptHandle: m.ReceiptHandle!, VisibilityTimeout: 0 }))));
        const failed = undo.filter((r) => r.status === 'rejected').length;
        if (failed) this.c.logger?.warn('backend_error', { code: 'MG_ERR_BACKEND', during: `${op}: make dead letters visible again`, failed, message: `${failed} dead letters stay hidden for up to 60 s` });
        throw err;
      }
    });
  }

  #entries(msgs: Message[]): { m: Message; e: DeadEntry }[] {
    const out: { m: Message; e: DeadEntry }[] = [];
    for (const m of msgs) {
      try {
        out.push({ m, e: deadEntryOf(m) });
      } catch (err) {
        if (!(err instanceof MalformedRecord)) throw err;
        logMalformed(this.c.logger, err, { queue: this.c.names.dlq });
      }
    }
    return out;
  }

  async list(limit: number): Promise<DeadEntry[]> {
    const n = Math.floor(limit);
    if (!(n >= 1)) return [];
    const all = await this.#scan('list dead', async (msgs) => ({ value: this.#entries(msgs).map((x) => x.e), deleted: new Set<Message>() }));
    return all.sort((a, b) => a.deadAt - b.deadAt).slice(0, n);
  }

  async retry(id?: string): Promise<number> {
    return this.#scan('retry dead', async (msgs) => {
      const deleted = new Set<Message>();
      for (const { m, e } of this.#entries(msgs)) {
        if (id !== undefined && e.id !== id) continue;
        if (!e.jobId || !e.role || (!m.MessageAttributes?.payload?.BinaryValue && !attr(m, 's3_key'))) continue;
        const attrs: Record<string, MessageAttributeValue> = { ...(m.MessageAttributes ?? {}), attempts_before: num(0) };
        for (const k of ['reason', 'attempts', 'dead_at']) delete attrs[k];
        await this.c.send(new SendMessageCommand({ QueueUrl: this.c.mainUrl!, MessageBody: m.Body || e.id, MessageAttributes: attrs }));
        await this.c.deleteAll(this.c.dlqUrl!, [m.ReceiptHandle!]);
        deleted.add(m);
      }
      return { value: deleted.size, deleted };
    });
  }

  async purge(): Promise<number> {
    // Received and deleted rather than PurgeQueue (which SQS allows once a minute, and finishes later).
    return this.#scan('purge dead', async (msgs) => {
      await this.c.deleteAll(this.c.dlqUrl!, msgs.map((m) => m.ReceiptHandle!));
      return { value: msgs.length, deleted: new Set(msgs) };
    });
  }

  async counts(url: string): Promise<{ visible: number; invisible: number }> {
    const a = await this.c.send<{ Attributes?: Record<string, string> }>(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
    const n = (v: string | undefined) => Math.max(0, Number(v ?? 0) || 0);
    return { visible: n(a.Attributes?.ApproximateNumberOfMessages), invisible: n(a.Attributes?.ApproximateNumberOfMessagesNotVisible) };
  }
}
