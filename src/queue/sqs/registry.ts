/**
 * What SQS keeps besides batches and results: a job's manifest (one message in a queue of its own,
 * read without deleting), artifacts (the same, one queue each) and the worker registry (tags of one
 * queue: one tag per worker). Everything read back is checked: a manifest outside its schema, an
 * artifact whose bytes do not match its sha256, a tag that is not a heartbeat are not trusted.
 */
import { ListQueueTagsCommand, SendMessageCommand, TagQueueCommand, UntagQueueCommand, type Message } from '@aws-sdk/client-sqs';
import type { QueueConfig } from '../../options/queue.js';
import { logMalformed, MalformedRecord, parseManifest, parseWorkerInfo } from '../records.js';
import type { JobManifest, WorkerInfo } from '../types.js';
import { sha256 } from '../../util/hash.js';
import { ArtifactMemo } from '../artifact-memo.js';
import { attr, notFound, str, toBuffer, xmlSafe, type SqsClientHost } from './client.js';

export class SqsRegistry {
  readonly #manifests = new Map<string, JobManifest>();
  /** Recently used artifacts' bytes, within a byte budget (a Map kept every one for the process's life). */
  readonly #artifacts = new ArtifactMemo();
  readonly #lastBeat = new Map<string, number>();

  constructor(
    private readonly c: SqsClientHost,
    private readonly config: QueueConfig,
  ) {}

  async #peek(name: string): Promise<Message | undefined> {
    const url = await this.c.urlOf(name);
    if (!url) return undefined;
    try {
      // VisibilityTimeout 0: the message stays for every other reader. A long poll asks every SQS server.
      const [m] = await this.c.receive(url, 1, 0, 1);
      return m;
    } catch (err) {
      if (notFound(err)) {
        this.c.forget(name);
        return undefined;
      }
      throw err;
    }
  }

  async putArtifact(sha: string, bytes: Uint8Array): Promise<void> {
    await this.c.run('put artifact', async () => {
      // One copy is enough while it lasts: an artifact queue that still holds one is left alone.
      if (this.#artifacts.get(sha) !== undefined) return;
      const url = await this.c.createQueue(this.c.names.artifact(sha), { MessageRetentionPeriod: String(this.c.retention()) });
      const attrs = await this.c.carry(`artifact ${sha.slice(0, 12)}`, toBuffer(bytes), { kind: str('artifact'), sha: str(sha) }, 'artifact');
      await this.c.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'artifact', MessageAttributes: attrs }));
      this.#artifacts.set(sha, new Uint8Array(bytes));
    });
  }

  async getArtifact(sha: string): Promise<Uint8Array | null> {
    const known = this.#artifacts.get(sha);
    if (known) return known;
    return this.c.run('get artifact', async () => {
      const m = await this.#peek(this.c.names.artifact(sha));
      if (!m || attr(m, 'sha') !== sha) return null;
      const bytes = await this.c.bytesOf(m);
      if (!bytes) return null;
      if (sha256(bytes) !== sha) {
        logMalformed(this.c.logger, new MalformedRecord(`artifact ${sha.slice(0, 12)}`, 'content', 'does not match its sha256 (tampered or corrupt)'), { queue: this.c.name });
        return null;
      }
      this.#artifacts.set(sha, new Uint8Array(bytes));
      return bytes;
    });
  }

  async putJob(manifest: JobManifest): Promise<void> {
    await this.c.run('put job', async () => {
      const url = await this.c.createQueue(this.c.names.job(manifest.jobId), { MessageRetentionPeriod: String(this.c.retention()) });
      await this.c.send(new SendMessageCommand({ QueueUrl: url, MessageBody: JSON.stringify(manifest), MessageAttributes: { kind: str('job'), job: str(manifest.jobId) } }));
    });
    this.#manifests.set(manifest.jobId, structuredClone(manifest));
  }

  /** Throws MG_ERR_MALFORMED_RECORD (logged) for a manifest outside its schema. */
  async getJob(jobId: string): Promise<JobManifest | null> {
    const known = this.#manifests.get(jobId);
    if (known) return structuredClone(known);
    return this.c.run('get job', async () => {
      const m = await this.#peek(this.c.names.job(jobId));
      if (!m?.Body || attr(m, 'job') !== jobId) return null;
      let manifest: JobManifest;
      try {
        manifest = parseManifest(jobId, m.Body);
      } catch (err) {
        if (err instanceof MalformedRecord) logMalformed(this.c.logger, err, { queue: this.c.name });
        throw err;
      }
      this.#manifests.set(jobId, manifest);
      return structuredClone(manifest);
    });
  }

  forgetJob(jobId: string): void {
    this.#manifests.delete(jobId);
  }

  // --- workers -------------------------------------------------------------------------------------

  async #registry(): Promise<string> {
    return this.c.createQueue(this.c.names.workers, { MessageRetentionPeriod: '60' });
  }

  async heartbeat(info: WorkerInfo): Promise<void> {
    // Tag writes are rate-limited by AWS: at most one per worker per third of heartbeat_timeout.
    const last = this.#lastBeat.get(info.workerId) ?? 0;
    const every = Math.max(0, (this.config.heartbeat_timeout * 1000) / 3);
    if (Date.now() - last < every && info.state !== 'draining') return;
    // A tag value holds 256 characters: the registry keeps what fits, the optional extras only if they do.
    const core = { h: info.host.slice(0, 64), p: info.pid, t: info.threads, s: info.startedAt, c: info.casesCompleted ?? 0, st: info.state === 'draining' ? 'd' : 'r', at: Date.now() };
    const i = info as unknown as Record<string, unknown>;
    const extra = Object.fromEntries(['version', 'node', 'codec', 'casesPerSec'].filter((k) => i[k] !== undefined).map((k) => [k, i[k]]));
    const full = JSON.stringify({ ...core, x: extra });
    const value = xmlSafe(full).length <= 256 ? full : JSON.stringify(core);
    await this.c.run('heartbeat', async () => {
      await this.c.send(new TagQueueCommand({ QueueUrl: await this.#registry(), Tags: { [`w:${info.workerId}`.slice(0, 128)]: xmlSafe(value).slice(0, 256) } }));
    });
    this.#lastBeat.set(info.workerId, Date.now());
  }

  async removeWorker(workerId: string): Promise<void> {
    this.#lastBeat.delete(workerId);
    await this.c.run('remove worker', async () => {
      await this.c.send(new UntagQueueCommand({ QueueUrl: await this.#registry(), TagKeys: [`w:${workerId}`.slice(0, 128)] }));
    });
  }

  /** Tags read back as heartbeats; one that is not a heartbeat of ours is skipped with `malformed_record`. */
  async activeWorkers(): Promise<WorkerInfo[]> {
    const tags = await this.c.run('active workers', async () => (await this.c.send<{ Tags?: Record<string, string> }>(new ListQueueTagsCommand({ QueueUrl: await this.#registry() }))).Tags ?? {});
    const since = Date.now() - this.config.heartbeat_timeout * 1000;
    const out: WorkerInfo[] = [];
    for (const [key, value] of Object.entries(tags)) {
      if (!key.startsWith('w:')) continue;
      const workerId = key.slice(2);
      try {
        let v: Record<string, unknown>;
        try {
          v = JSON.parse(value) as Record<string, unknown>;
        } catch {
          throw new MalformedRecord(`worker ${workerId}`, 'json', 'is not valid JSON');
        }
        if (v === null || typeof v !== 'object') throw new MalformedRecord(`worker ${workerId}`, 'tag', 'must be an object');
        const at = Number(v.at);
        if (!Number.isFinite(at) || at < 0) throw new MalformedRecord(`worker ${workerId}`, 'at', 'must be a time in ms');
        if (at < since) continue;
        const x = v.x !== null && typeof v.x === 'object' ? (v.x as Record<string, unknown>) : {};
        const info = { ...x, host: v.h ?? '', pid: v.p ?? 0, threads: v.t, startedAt: v.s ?? 0, casesCompleted: v.c ?? 0, state: v.st === 'd' ? 'draining' : 'running' };
        out.push(parseWorkerInfo(workerId, at, JSON.stringify(info), (err) => logMalformed(this.c.logger, err, { queue: this.c.name })));
      } catch (err) {
        if (!(err instanceof MalformedRecord)) throw err;
        logMalformed(this.c.logger, err, { queue: this.c.names.workers });
      }
    }
    return out.sort((a, b) => a.workerId.localeCompare(b.workerId));
  }
}
