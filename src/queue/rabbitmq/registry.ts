/**
 * What RabbitMQ keeps on streams, as every process reads it: job manifests and their tombstones,
 * artifacts (the jobs stream), and worker heartbeats (the workers stream). Every record is checked
 * before it is kept: a manifest outside its schema, an artifact whose bytes do not match its sha256 or
 * a heartbeat that is not one are skipped with `malformed_record`.
 */
import type { ConsumeMessage, Options } from 'amqplib';
import { MetaguardError } from '../../errors.js';
import type { QueueConfig } from '../../options/queue.js';
import { logMalformed, MalformedRecord, parseManifest, parseWorkerInfo } from '../records.js';
import type { JobManifest, WorkerInfo } from '../types.js';
import type { RabbitConnection } from './connection.js';
import { sha256 } from '../../util/hash.js';
import { ArtifactMemo, onceAtATime } from '../artifact-memo.js';
import { StreamView, type StreamHost } from './stream-view.js';
import { hint, hstr, toBuffer } from './wire.js';

const CATCH_UP_MS = 15_000;
/** An artifact appended this recently is not appended again (the jobs stream keeps 7 days). */
const ARTIFACT_REUSE_MS = 24 * 3600 * 1000;
/** The jobs stream's retention (`x-max-age` 7D), plus a day: what is older is gone from the stream and forgotten here. */
const FORGET_AFTER_MS = 8 * 24 * 3600 * 1000;
/** The workers stream's retention (`x-max-age` 1h). */
const WORKERS_RETENTION_MS = 3600 * 1000;
/** Jobs stream records between two passes that forget what is older than FORGET_AFTER_MS. */
const PRUNE_EVERY = 256;
const SHA256 = /^[0-9a-f]{64}$/;

export class RabbitRegistry {
  #jobsView: StreamView | undefined;
  readonly #manifests = new Map<string, JobManifest>();
  /** Deleted or withdrawn jobs, and when this process read that. */
  readonly #tombstones = new Map<string, number>();
  /** The bytes of recently used artifacts (a byte budget: the stream carries every evaluation's). */
  readonly #artifacts: ArtifactMemo;
  /**
   * Each artifact read or appended: when it was last appended (publisher's clock, never past this
   * process's now) and the stream offset of a good copy — where to read it again once the memo has let
   * its bytes go.
   */
  readonly #artifactAt = new Map<string, { at: number; offset: number | undefined }>();
  /** When each manifest was last read or asked for (this process's clock): what pruning goes by. */
  readonly #manifestUsed = new Map<string, number>();
  /** Rereads of the stream in progress, one per artifact. */
  readonly #rereads = new Map<string, Promise<Uint8Array | null>>();
  #sincePrune = 0;
  #workersView: StreamView | undefined;
  #workersCaughtUp = false;
  readonly #workers = new Map<string, WorkerInfo>();
  readonly #host: StreamHost;

  constructor(
    private readonly c: RabbitConnection,
    private readonly config: QueueConfig,
    artifactMemoBytes?: number,
  ) {
    this.#artifacts = new ArtifactMemo(artifactMemoBytes);
    this.#host = {
      channel: (prefetch) => c.channel(prefetch, 'stream reader'),
      currentGen: () => c.connGen,
      publishTo: async (queue: string, content: Buffer, options: Options.Publish) => {
        await c.ensure();
        await c.publish('', queue, content, options);
      },
      logger: c.logger,
    };
  }

  stop(): void {
    this.#jobsView?.stop();
    this.#workersView?.stop();
  }

  /** True once this process has read the job's tombstone (deleted or withdrawn). */
  deleted(jobId: string): boolean {
    return this.#tombstones.has(jobId);
  }

  #jobs(): StreamView {
    return (this.#jobsView ??= new StreamView(this.c.names.jobs, this.#host, undefined, (msg) => this.#onJobRecord(msg)));
  }

  #onJobRecord(msg: ConsumeMessage): void {
    const h = msg.properties.headers;
    const kind = hstr(h, 'kind');
    const offset = hstr(h, 'x-stream-offset');
    if (kind === 'artifact') {
      const sha = hstr(h, 'sha256') ?? '';
      if (!SHA256.test(sha)) throw new MalformedRecord(`artifact at offset ${offset}`, 'sha256', 'must be 64 hex digits');
      if (sha256(msg.content) !== sha) throw new MalformedRecord(`artifact ${sha.slice(0, 12)}`, 'content', 'does not match its sha256 (tampered or corrupt)');
      this.#artifacts.set(sha, new Uint8Array(msg.content)); // a copy of its own: a view would pin amqplib's buffer
      const at = Math.min(hint(h, 'at') || Date.now(), Date.now());
      const off = Number(offset);
      this.#artifactAt.set(sha, { at: Math.max(this.#artifactAt.get(sha)?.at ?? 0, at), offset: Number.isSafeInteger(off) ? off : undefined });
      this.#pruneSometimes();
    } else if (kind === 'job') {
      const jobId = hstr(h, 'job') ?? '';
      const m = parseManifest(jobId, msg.content.toString('utf8'));
      this.#manifests.set(m.jobId, m);
      this.#manifestUsed.set(m.jobId, Date.now());
      this.#tombstones.delete(m.jobId);
      this.#pruneSometimes();
    } else if (kind === 'job-deleted') {
      const jobId = hstr(h, 'job');
      if (jobId) {
        this.#manifests.delete(jobId);
        this.#manifestUsed.delete(jobId);
        this.#tombstones.set(jobId, Date.now());
      }
      this.#pruneSometimes();
    } else throw new MalformedRecord(`jobs stream record at offset ${offset}`, 'kind', 'must be artifact, job or job-deleted');
  }

  /**
   * Forgets what the stream itself no longer holds (FORGET_AFTER_MS): artifact times, tombstones, and
   * manifests nobody asked for that long (a job still running keeps its manifest). Times come from this
   * process's clock or are capped at it, so a record dated in the future is forgotten like any other.
   */
  #pruneSometimes(): void {
    if (++this.#sincePrune < PRUNE_EVERY) return;
    this.#sincePrune = 0;
    const before = Date.now() - FORGET_AFTER_MS;
    for (const [sha, a] of this.#artifactAt) if (a.at < before) this.#artifactAt.delete(sha);
    for (const [jobId, at] of this.#tombstones) if (at < before) this.#tombstones.delete(jobId);
    for (const [jobId, at] of this.#manifestUsed) {
      if (at >= before) continue;
      this.#manifestUsed.delete(jobId);
      this.#manifests.delete(jobId);
    }
  }

  async #caughtUp(view: StreamView, what: string): Promise<void> {
    const ok = await this.c.run(`read ${what}`, () => view.catchUp(CATCH_UP_MS));
    this.c.checkOpen();
    if (!ok) throw new MetaguardError('MG_ERR_BACKEND', `rabbitmq: reading ${view.stream} did not catch up within ${CATCH_UP_MS} ms (${what})`);
  }

  async putArtifact(sha256: string, bytes: Uint8Array): Promise<void> {
    // The same code evaluated again is not appended again while its copy on the stream is recent
    // (well inside the stream's 7-day retention): the stream, and every reader's memory, stay small.
    const fresh = () => (this.#artifactAt.get(sha256)?.at ?? 0) > Date.now() - ARTIFACT_REUSE_MS;
    if (!fresh()) await this.#caughtUp(this.#jobs(), `artifact ${sha256.slice(0, 12)}`);
    if (fresh()) return;
    const at = Date.now();
    await this.c.run('put artifact', () => this.c.publish('', this.c.names.jobs, toBuffer(bytes), { headers: { kind: 'artifact', sha256, at }, persistent: true }));
    this.#artifacts.set(sha256, new Uint8Array(bytes));
    this.#artifactAt.set(sha256, { at, offset: this.#artifactAt.get(sha256)?.offset });
  }

  async getArtifact(sha: string): Promise<Uint8Array | null> {
    this.c.checkOpen();
    const known = this.#artifacts.get(sha);
    if (known) return known;
    await this.#caughtUp(this.#jobs(), `artifact ${sha.slice(0, 12)}`);
    const read = this.#artifacts.get(sha);
    if (read || !this.#artifactAt.has(sha)) return read ?? null;
    // Read once, and its bytes since let go: read the stream again, from that copy's offset, once
    // however many batches ask at the same moment.
    return onceAtATime(this.#rereads, sha, () => this.#reread(sha));
  }

  async #reread(sha: string): Promise<Uint8Array | null> {
    let found: Uint8Array | undefined;
    const view = new StreamView(this.c.names.jobs, this.#host, this.#artifactAt.get(sha)?.offset, (msg) => {
      const h = msg.properties.headers;
      if (found || hstr(h, 'kind') !== 'artifact' || hstr(h, 'sha256') !== sha) return;
      // A copy that does not match its name is skipped here as it was the first time.
      if (sha256(msg.content) === sha) found = new Uint8Array(msg.content);
    });
    try {
      await this.#caughtUp(view, `artifact ${sha.slice(0, 12)} again`);
    } finally {
      view.stop();
    }
    this.c.logger?.log('debug', 'artifact_reread', { queue: this.c.q, sha256: sha, found: found !== undefined });
    if (found) this.#artifacts.set(sha, found);
    return found ?? null;
  }

  async putJob(manifest: JobManifest): Promise<void> {
    await this.c.run('put job', () => this.c.publish('', this.c.names.jobs, Buffer.from(JSON.stringify(manifest)), { headers: { kind: 'job', job: manifest.jobId }, persistent: true }));
    this.#manifests.set(manifest.jobId, structuredClone(manifest));
    this.#manifestUsed.set(manifest.jobId, Date.now());
    this.#tombstones.delete(manifest.jobId);
  }

  async getJob(jobId: string): Promise<JobManifest | null> {
    this.c.checkOpen();
    if (!this.#manifests.has(jobId) && !this.#tombstones.has(jobId)) await this.#caughtUp(this.#jobs(), `job ${jobId}`);
    const m = this.#manifests.get(jobId);
    if (m) this.#manifestUsed.set(jobId, Date.now());
    return m ? structuredClone(m) : null;
  }

  /** Appends the job's tombstone: every process drops its manifest and its batches. */
  async tombstone(jobId: string): Promise<void> {
    this.#manifests.delete(jobId);
    this.#tombstones.set(jobId, Date.now());
    await this.c.publish('', this.c.names.jobs, Buffer.alloc(0), { headers: { kind: 'job-deleted', job: jobId }, persistent: true });
  }

  // --- workers -------------------------------------------------------------------------------------

  #workersStream(): StreamView {
    return (this.#workersView ??= new StreamView(this.c.names.workers, this.#host, undefined, (msg) => {
      const h = msg.properties.headers;
      const workerId = hstr(h, 'worker');
      if (!workerId) throw new MalformedRecord(`workers stream record at offset ${hstr(h, 'x-stream-offset')}`, 'worker', 'is missing');
      if (hstr(h, 'kind') === 'leave') {
        this.#workers.delete(workerId);
        return;
      }
      const sent = Number(hstr(h, 'at'));
      if (!Number.isFinite(sent) || sent < 0) throw new MalformedRecord(`worker ${workerId}`, 'at', 'must be a time in ms');
      // Never later than now here: a heartbeat dated in the future would keep its worker for ever.
      const at = Math.min(sent, Date.now());
      const prev = this.#workers.get(workerId);
      if (prev && (prev.lastHeartbeat ?? 0) > at) return;
      const info = parseWorkerInfo(workerId, at, msg.content.toString('utf8'), (err) => logMalformed(this.c.logger, err, { queue: this.c.q }));
      this.#workers.set(workerId, info);
    }));
  }

  async heartbeat(info: WorkerInfo): Promise<void> {
    const { lastHeartbeat: _ignored, ...rest } = info;
    await this.c.run('heartbeat', () => this.c.publish('', this.c.names.workers, Buffer.from(JSON.stringify(rest)), { headers: { kind: 'heartbeat', worker: info.workerId, at: Date.now() }, persistent: true }));
  }

  async removeWorker(workerId: string): Promise<void> {
    this.#workers.delete(workerId);
    await this.c.run('remove worker', () => this.c.publish('', this.c.names.workers, Buffer.alloc(0), { headers: { kind: 'leave', worker: workerId, at: Date.now() }, persistent: true }));
  }

  async activeWorkers(): Promise<WorkerInfo[]> {
    const view = this.#workersStream();
    if (!this.#workersCaughtUp) {
      await this.#caughtUp(view, 'worker heartbeats');
      this.#workersCaughtUp = true;
    } else await this.c.run('active workers', () => view.start());
    const since = Date.now() - this.config.heartbeat_timeout * 1000;
    // A worker that died without leaving is forgotten once the stream (1 hour) no longer holds it.
    const gone = Date.now() - WORKERS_RETENTION_MS;
    for (const [id, w] of this.#workers) if ((w.lastHeartbeat ?? 0) < gone) this.#workers.delete(id);
    return [...this.#workers.values()].filter((w) => (w.lastHeartbeat ?? 0) >= since).map((w) => ({ ...w }));
  }
}
