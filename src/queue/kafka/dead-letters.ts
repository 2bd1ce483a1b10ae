/**
 * The dead-letter topic T.dlq as `metaguard dlq` sees it: dead letters (key = batch id; the original
 * value and headers plus reason, dead_at, attempts, source) and the markers `dlq retry|purge` append
 * (header kind=retried|purge), read by a topic view into a map of live dead letters.
 *
 * Kafka cannot delete single records: a purge appends a marker to every partition, and readers drop
 * what came before it; the records themselves expire with the topic's retention.
 */
import type { KafkaMessage } from 'kafkajs';
import { isRecordId } from '../records.js';
import type { DeadEntry } from '../types.js';
import type { KafkaClient } from './client.js';
import type { TopicView } from './topic-view.js';
import { parseDlqRecord, prioOf, type DeadRecord } from './wire.js';

export class KafkaDeadLetters {
  readonly #client: KafkaClient;
  #view: TopicView | undefined;
  readonly #dead = new Map<string, DeadRecord>();

  constructor(client: KafkaClient) {
    this.#client = client;
  }

  get view(): TopicView | undefined {
    return this.#view;
  }

  #onRecord(p: number, m: KafkaMessage): void {
    const topic = this.#client.topics.dlq;
    const rec = parseDlqRecord(topic, p, m);
    if (rec.kind === 'purge') {
      // Everything this partition held before the marker is purged.
      for (const [key, d] of this.#dead) if (d.partition === p) this.#dead.delete(key);
      return;
    }
    if (rec.kind === 'retried') {
      const d = this.#dead.get(rec.id);
      if (d && d.partition === p && d.offset < BigInt(m.offset)) this.#dead.delete(rec.id);
      return;
    }
    for (const err of rec.dropped) this.#client.skipped(topic, p, m, err, 'the field is left out: the dead letter is listed, but dlq retry does not re-produce it');
    this.#dead.set(rec.dead.id, rec.dead);
  }

  #startView(): TopicView {
    return (this.#view ??= this.#client.view(this.#client.topics.dlq, 'dlq', 'beginning', (p, m) => this.#onRecord(p, m), 'the record is not listed by dlq list, retried or counted'));
  }

  async #live(): Promise<DeadRecord[]> {
    await this.#client.run('read dead letters', () => this.#client.ensureConnected());
    await this.#client.caughtUp(this.#startView(), 'dead letters');
    return [...this.#dead.values()].sort((a, b) => a.deadAt - b.deadAt);
  }

  async count(): Promise<number> {
    return (await this.#live()).length;
  }

  async list(limit = 100): Promise<DeadEntry[]> {
    const n = Math.floor(limit);
    if (!(n >= 1)) return [];
    return (await this.#live()).slice(0, n).map((d) => {
      const entry: DeadEntry = { id: d.id, error: d.error, attempts: d.attempts, deadAt: d.deadAt };
      if (d.jobId !== undefined) entry.jobId = d.jobId;
      if (d.role !== undefined) entry.role = d.role;
      return entry;
    });
  }

  /**
   * Re-produces dead-lettered batches (those that still are well-formed batches) to the batch topic
   * with fresh attempts, then marks them retried on the DLQ topic. Returns how many.
   */
  async retry(id?: string): Promise<number> {
    const all = await this.#live();
    const targets = all.filter((d) => (id === undefined || d.id === id) && isRecordId(d.id) && d.value && d.value.length > 0 && d.jobId && d.role && d.headers.id);
    let n = 0;
    for (const d of targets) {
      const h = d.headers;
      const headers: Record<string, string> = { id: d.id, job: d.jobId!, role: d.role!, priority: prioOf(h.priority), attempt: '0', ...(h.mac ? { mac: h.mac } : {}) };
      await this.#client.send('retry dead', this.#client.topics.batches, [{ key: d.id, value: d.value, headers }]);
      await this.#client.send('retry dead', this.#client.topics.dlq, [{ key: d.id, value: null, headers: { kind: 'retried', id: d.id } }]);
      this.#dead.delete(d.id);
      n++;
    }
    return n;
  }

  async purge(): Promise<number> {
    const n = (await this.#live()).length;
    const admin = await this.#client.run('purge dead', () => this.#client.admin());
    const parts = await this.#client.run('purge dead', () => admin.fetchTopicOffsets(this.#client.topics.dlq));
    await this.#client.send(
      'purge dead',
      this.#client.topics.dlq,
      parts.map((p) => ({ partition: p.partition, key: null, value: null, headers: { kind: 'purge', purged_at: String(Date.now()) } })),
    );
    this.#dead.clear();
    return n;
  }
}
