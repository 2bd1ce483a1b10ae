/**
 * Amazon SQS implementation of the queue `Backend` (@aws-sdk/client-sqs; S3 for large messages).
 *
 * Queues (N = the name of `queue_url`, or `queue_name` / `queue`, created when missing):
 *   N          batches (a standard queue; FIFO queues are not supported). A batch is a message: body =
 *              the batch id; attributes id, job, role, priority, mac, attempts_before, and the codec
 *              frame as the Binary attribute `payload` — or, over 256 KiB, `s3_key` + `sha256` of the
 *              frame stored in `s3_bucket`.
 *   N-dlq      dead letters (or the queue N's RedrivePolicy names), with reason, dead_at, attempts.
 *              N, when created here, gets a RedrivePolicy to it with maxReceiveCount =
 *              max_requeue_attempts + 2: a backstop for messages nobody could dead-letter with a reason.
 *   N-r-<h>    one per job (h = a hash of the job id): results and dead entries, read and deleted by
 *              the coordinator; deleted with the job.
 *   N-j-<h>    one per job: its manifest, read without deleting (VisibilityTimeout 0); deleted with the job.
 *   N-a-<h>    one per artifact (h = its sha256, shortened): the module, read the same way.
 *   N-workers  the worker registry, as tags of this queue (one tag per worker; SQS allows 50).
 *
 * Delivery:
 *   - A claim is a ReceiveMessage; its lease is the visibility timeout (`visibility_timeout`, default
 *     `lease_seconds`, whole seconds), renewed with ChangeMessageVisibilityBatch while the batch runs.
 *     A lease that was not renewed in time is reported lost; SQS makes the message visible again on its
 *     own, so `reclaimExpired` has nothing to do and `circuit_breaker_threshold` does not apply.
 *   - A message is deleted (DeleteMessageBatch) only after its results were sent.
 *   - attempt = attempts_before + ApproximateReceiveCount, so redeliveries after a crash count; a
 *     message received past max_requeue_attempts + 1 attempts is dead-lettered with the reason.
 *     A counted retry makes the message visible again after its delay (ChangeMessageVisibility).
 *     A hand-back (drain) is claimed first by this process; `close()` sends such hand-backs back as
 *     new messages with attempts_before set so that the hand-back is not counted.
 *   - Standard queues do not keep order: there is no FIFO, and priorities are not honoured (every
 *     batch is in N); results may arrive in any order (the coordinator does not need order).
 *
 * Idle workers long-poll (`long_polling_seconds`) in `waitForWork`. `stats()`: pending and dead are
 * SQS's approximate counts (pending all under `normal`); in-flight, delayed, dispatched, completed and
 * requeued count this process only. Clock: `now()` is this host's Date.now(), so hosts need
 * synchronised clocks. Credentials come from `aws_access_key_id` / `aws_secret_access_key` or the AWS
 * default chain (environment, profile, instance or task role); they are never logged.
 */
import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import {
  SQSClient,
  CreateQueueCommand,
  GetQueueUrlCommand,
  GetQueueAttributesCommand,
  SendMessageCommand,
  SendMessageBatchCommand,
  ReceiveMessageCommand,
  DeleteMessageBatchCommand,
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  DeleteQueueCommand,
  TagQueueCommand,
  UntagQueueCommand,
  ListQueueTagsCommand,
  type Message,
  type MessageAttributeValue,
} from '@aws-sdk/client-sqs';
import { S3Client, PutObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { MetaguardError, invalidOption } from '../../errors.js';
import type { QueueConfig } from '../../options/queue.js';
import { signDead, signResults } from '../messages.js';
import { waitForAny } from '../../util/wait.js';
import {
  priorities,
  type Backend,
  type BatchMessage,
  type Claim,
  type ClaimedBatch,
  type DeadEntry,
  type JobManifest,
  type Priority,
  type QueueStats,
  type ReclaimOutcome,
  type ResultEntry,
  type WorkerInfo,
} from '../types.js';
import type { Role } from '../../core/protocol.js';

const roleSet = new Set<string>(['baseline', 'candidate']);
/** SQS's message size limit, less room for what the estimate below does not count. */
export const SQS_MAX_MESSAGE_BYTES = 256 * 1024 - 2048;
const MAX_DLQ_SCAN = 5000;

export interface SqsQueueStats extends QueueStats {
  sqs: { queueUrl: string; dlqUrl: string; note: string };
}

const STATS_NOTE = 'pending and dead are SQS approximate counts (pending under normal: SQS has no priorities); in-flight, delayed, dispatched, completed and requeued count this process only';

function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name && err.name !== 'Error' ? err.name + ': ' : ''}${err.message}`;
  return String(err);
}

function notFound(err: unknown): boolean {
  const e = err as { name?: string; Code?: string; code?: string };
  return /QueueDoesNotExist|NonExistentQueue/.test(`${e?.name ?? ''} ${e?.Code ?? ''} ${e?.code ?? ''}`);
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const h = (s: string, n: number) => createHash('sha256').update(s).digest('hex').slice(0, n);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** SQS string attributes allow only XML characters: anything else becomes U+FFFD. */
function xmlSafe(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu, '\ufffd');
}

function attr(m: Message, name: string): string | undefined {
  const a = m.MessageAttributes?.[name];
  return a?.StringValue ?? undefined;
}

function str(v: string): MessageAttributeValue {
  return { DataType: 'String', StringValue: xmlSafe(v) };
}

function num(v: number): MessageAttributeValue {
  return { DataType: 'Number', StringValue: String(v) };
}

function attrBytes(attrs: Record<string, MessageAttributeValue>, body: string): number {
  let n = Buffer.byteLength(body);
  for (const [k, v] of Object.entries(attrs)) n += k.length + (v.DataType?.length ?? 0) + (v.StringValue !== undefined ? Buffer.byteLength(v.StringValue) : (v.BinaryValue?.byteLength ?? 0));
  return n;
}

/** The region of an SQS queue URL (https://sqs.<region>.amazonaws.com/...). */
export function regionOfQueueUrl(url: string): string | undefined {
  return /^https?:\/\/sqs[.-]([a-z0-9-]+)\.amazonaws\.com/.exec(url)?.[1];
}

type Parsed =
  | { ok: true; batch: Omit<ClaimedBatch, 'attempt' | 'payload'>; attemptsBefore: number }
  | { ok: false; reason: string; jobId?: string; role?: Role; attemptsBefore: number };

interface Held {
  id: string;
  message: Message;
  receipts: string[];
  owner?: string;
  /** Local clock of the lease's end. */
  deadline: number;
  parsed: Parsed;
  claim?: ClaimedBatch;
  receiveCount: number;
}

export class SqsBackend implements Backend {
  readonly kind = 'sqs';
  /** What this backend promises beyond the common contract (src/queue/types.ts). */
  readonly capabilities = {
    queue: { leases: false, circuitBreaker: false, strictPriority: false, weightedPriority: false, fifo: false, idempotentEnqueue: false, lostBatchDetection: false, wakeOnWork: true },
    admin: { perPriorityStats: false, pendingExcludesClaimed: true, delayedStats: true, withdraw: false, preflight: false, progress: false, priorityCounts: false, benchRecords: false },
  };
  readonly #config: QueueConfig;
  readonly #sqs: SQSClient;
  readonly #s3: S3Client | undefined;
  readonly #name: string;
  readonly #events = new EventEmitter();
  readonly #abort = new AbortController();
  #urls = new Map<string, string>();
  #mainUrl: string | undefined;
  #dlqUrl: string | undefined;
  #connecting: Promise<void> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  readonly #held = new Map<string, Held>();
  #returned: Held[] = [];
  /** Messages received by waitForWork, not yet claimed. */
  #stash: Message[] = [];
  readonly #delayed = new Map<string, number>();
  readonly #counters = { dispatched: 0, completed: 0, requeued: 0 };
  readonly #jobResults = new Map<string, ResultEntry[]>();
  readonly #deletedJobs = new Set<string>();
  readonly #manifests = new Map<string, JobManifest>();
  readonly #artifacts = new Map<string, Buffer>();
  #lastBeat = new Map<string, number>();

  constructor(config: QueueConfig) {
    this.#config = config;
    this.#events.setMaxListeners(0);
    this.#name = config.queue_url !== undefined ? config.queue_url.replace(/\/+$/, '').split('/').pop()! : config.queue;
    const region = config.region ?? (config.queue_url ? regionOfQueueUrl(config.queue_url) : undefined) ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    const credentials = config.aws_access_key_id !== undefined && config.aws_secret_access_key !== undefined ? { accessKeyId: config.aws_access_key_id, secretAccessKey: config.aws_secret_access_key } : undefined;
    const common = { region, maxAttempts: 3, ...(credentials ? { credentials } : {}), ...(config.endpoint_url ? { endpoint: config.endpoint_url } : {}) };
    this.#sqs = new SQSClient(common);
    this.#s3 = config.s3_bucket !== undefined ? new S3Client({ ...common, forcePathStyle: config.endpoint_url !== undefined }) : undefined;
  }

  /** Queue names (tests, tools). */
  names(): { main: string; dlq: string; results(jobId: string): string; job(jobId: string): string; artifact(sha: string): string; workers: string } {
    const n = this.#name;
    return { main: n, dlq: `${n}-dlq`, results: (j) => `${n}-r-${h(j, 24)}`, job: (j) => `${n}-j-${h(j, 24)}`, artifact: (s) => `${n}-a-${s.slice(0, 24)}`, workers: `${n}-workers` };
  }

  get queueUrl(): string | undefined {
    return this.#mainUrl;
  }

  // --- plumbing ------------------------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `sqs backend for queue ${this.#name} is closed`);
  }

  async #run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.#checkOpen();
    try {
      await this.#ensure();
      return await fn();
    } catch (err) {
      if (err instanceof MetaguardError) throw err;
      if (this.#closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `sqs backend closed during ${op}`, { cause: err });
      throw new MetaguardError('MG_ERR_BACKEND', `sqs ${op} failed (queue ${this.#name}): ${describe(err)}`, { cause: err });
    }
  }

  #send<T>(command: { input: unknown }): Promise<T> {
    return this.#sqs.send(command as never, { abortSignal: this.#abort.signal }) as Promise<T>;
  }

  async #ensure(): Promise<void> {
    this.#checkOpen();
    if (this.#mainUrl && this.#dlqUrl) return;
    await (this.#connecting ??= this.#connect().finally(() => (this.#connecting = undefined)));
  }

  async #connect(): Promise<void> {
    const c = this.#config;
    let main = c.queue_url;
    if (main === undefined) {
      try {
        main = (await this.#send<{ QueueUrl?: string }>(new GetQueueUrlCommand({ QueueName: this.#name }))).QueueUrl;
      } catch (err) {
        if (!notFound(err)) throw new MetaguardError('MG_ERR_BACKEND', `cannot reach sqs for queue ${this.#name}: ${describe(err)}`, { cause: err });
      }
    }
    let redrive: string | undefined;
    if (main !== undefined) {
      try {
        const a = await this.#send<{ Attributes?: Record<string, string> }>(new GetQueueAttributesCommand({ QueueUrl: main, AttributeNames: ['RedrivePolicy'] }));
        redrive = a.Attributes?.RedrivePolicy;
      } catch (err) {
        throw new MetaguardError('MG_ERR_BACKEND', `cannot reach sqs queue ${main}: ${describe(err)}`, { cause: err });
      }
    }
    let dlq: string | undefined;
    const target = redrive ? (JSON.parse(redrive) as { deadLetterTargetArn?: string }).deadLetterTargetArn : undefined;
    if (target) dlq = (await this.#send<{ QueueUrl?: string }>(new GetQueueUrlCommand({ QueueName: target.split(':').pop()! }))).QueueUrl;
    dlq ??= await this.#createQueue(this.names().dlq, { MessageRetentionPeriod: String(this.#retention()) });
    if (main === undefined) {
      const arn = (await this.#send<{ Attributes?: Record<string, string> }>(new GetQueueAttributesCommand({ QueueUrl: dlq, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn;
      main = await this.#createQueue(this.#name, {
        VisibilityTimeout: String(Math.ceil(this.#config.lease_seconds)),
        ...(arn ? { RedrivePolicy: JSON.stringify({ deadLetterTargetArn: arn, maxReceiveCount: c.max_requeue_attempts + 2 }) } : {}),
      });
    }
    this.#mainUrl = main;
    this.#dlqUrl = dlq;
  }

  #retention(): number {
    return Math.min(1_209_600, Math.max(60, this.#config.result_ttl_seconds));
  }

  async #createQueue(name: string, attributes: Record<string, string>): Promise<string> {
    const known = this.#urls.get(name);
    if (known) return known;
    let url: string | undefined;
    try {
      url = (await this.#send<{ QueueUrl?: string }>(new CreateQueueCommand({ QueueName: name, Attributes: attributes }))).QueueUrl;
    } catch (err) {
      // Created earlier with other attributes: use it as it is.
      if (!/QueueAlreadyExists|QueueNameExists/.test(describe(err))) throw err;
      url = (await this.#send<{ QueueUrl?: string }>(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
    }
    if (!url) throw new Error(`CreateQueue ${name} returned no URL`);
    this.#urls.set(name, url);
    return url;
  }

  async #urlOf(name: string): Promise<string | undefined> {
    const known = this.#urls.get(name);
    if (known) return known;
    try {
      const url = (await this.#send<{ QueueUrl?: string }>(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
      if (url) this.#urls.set(name, url);
      return url;
    } catch (err) {
      if (notFound(err)) return undefined;
      throw err;
    }
  }

  /** Message attributes carrying `bytes` inline, or through S3 when the message would be too large. */
  async #carry(what: string, bytes: Buffer, attrs: Record<string, MessageAttributeValue>, body: string): Promise<Record<string, MessageAttributeValue>> {
    const inline = { ...attrs, payload: { DataType: 'Binary', BinaryValue: bytes } };
    if (attrBytes(inline, body) <= SQS_MAX_MESSAGE_BYTES) return inline;
    if (!this.#s3 || this.#config.s3_bucket === undefined) {
      throw invalidOption('queue-config.s3_bucket', `is needed: ${what} is ${bytes.byteLength} bytes, over SQS's 256 KiB message limit`);
    }
    const digest = sha256(bytes);
    const key = `${this.#name}/${digest}`;
    await this.#s3.send(new PutObjectCommand({ Bucket: this.#config.s3_bucket, Key: key, Body: bytes }), { abortSignal: this.#abort.signal });
    return { ...attrs, s3_key: str(key), sha256: str(digest) };
  }

  /** The bytes a message carries (inline or in S3, verified against its sha256). */
  async #bytesOf(m: Message): Promise<Buffer | undefined> {
    const inline = m.MessageAttributes?.payload?.BinaryValue;
    if (inline) return Buffer.from(inline);
    const key = attr(m, 's3_key');
    const digest = attr(m, 'sha256');
    if (!key || !digest) return undefined;
    if (!this.#s3 || this.#config.s3_bucket === undefined) throw new MetaguardError('MG_ERR_CODEC', `message refers to s3 object ${key}, but queue-config.s3_bucket is not set`);
    const out = await this.#s3.send(new GetObjectCommand({ Bucket: this.#config.s3_bucket, Key: key }), { abortSignal: this.#abort.signal });
    const bytes = Buffer.from(await out.Body!.transformToByteArray());
    if (sha256(bytes) !== digest) throw new MetaguardError('MG_ERR_CODEC', `s3 object ${key} does not match its sha256 (tampered or corrupt)`);
    return bytes;
  }

  async #receive(url: string, max: number, visibility: number, wait: number): Promise<Message[]> {
    const r = await this.#send<{ Messages?: Message[] }>(
      new ReceiveMessageCommand({
        QueueUrl: url,
        MaxNumberOfMessages: Math.max(1, Math.min(10, max)),
        VisibilityTimeout: visibility,
        WaitTimeSeconds: wait,
        MessageAttributeNames: ['All'],
        MessageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp'],
      }),
    );
    return r.Messages ?? [];
  }

  async #deleteAll(url: string, receipts: string[]): Promise<void> {
    for (let i = 0; i < receipts.length; i += 10) {
      const chunk = receipts.slice(i, i + 10);
      await this.#send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: chunk.map((r, j) => ({ Id: String(j), ReceiptHandle: r })) }));
    }
  }

  // --- lifecycle -----------------------------------------------------------------------------------

  async connect(): Promise<void> {
    await this.#run('connect', async () => {});
  }

  close(): Promise<void> {
    return (this.#closing ??= this.#close());
  }

  async #close(): Promise<void> {
    // Hand-backs and stashed messages go back without counting an attempt: sent again as new messages
    // with attempts_before set, the received copies deleted.
    const back = this.#returned.filter((x) => x.parsed.ok);
    this.#returned = [];
    const stash = this.#stash;
    this.#stash = [];
    if (this.#mainUrl && (back.length || stash.length)) {
      const url = this.#mainUrl;
      try {
        await Promise.race([
          (async () => {
            for (const x of back) await this.#resend(url, x.message, x.claim ? x.claim.attempt - 1 : x.parsed.attemptsBefore + x.receiveCount - 1, x.receipts);
            for (const m of stash) {
              const rc = Number(m.Attributes?.ApproximateReceiveCount ?? 1);
              await this.#resend(url, m, Math.max(0, Number(attr(m, 'attempts_before') ?? 0)) + rc - 1, [m.ReceiptHandle!]);
            }
          })(),
          new Promise((r) => setTimeout(r, 5000)),
        ]);
      } catch {
        // they become visible again when their visibility timeout ends (counted as an attempt)
      }
    }
    this.#closed = true;
    this.#abort.abort();
    this.#events.emit('closed');
    this.#held.clear();
    this.#sqs.destroy();
    this.#s3?.destroy();
  }

  async #resend(url: string, m: Message, attemptsBefore: number, receipts: string[]): Promise<void> {
    const attrs = { ...(m.MessageAttributes ?? {}), attempts_before: num(Math.max(0, attemptsBefore)) };
    await this.#send(new SendMessageCommand({ QueueUrl: url, MessageBody: m.Body || 'batch', MessageAttributes: attrs }));
    await this.#deleteAll(url, receipts);
  }

  async now(): Promise<number> {
    return Date.now();
  }

  // --- jobs and artifacts --------------------------------------------------------------------------

  async #peek(name: string): Promise<Message | undefined> {
    const url = await this.#urlOf(name);
    if (!url) return undefined;
    try {
      // VisibilityTimeout 0: the message stays for every other reader. A long poll asks every SQS server.
      const [m] = await this.#receive(url, 1, 0, 1);
      return m;
    } catch (err) {
      if (notFound(err)) {
        this.#urls.delete(name);
        return undefined;
      }
      throw err;
    }
  }

  async putArtifact(sha: string, bytes: Uint8Array): Promise<void> {
    await this.#run('put artifact', async () => {
      const name = this.names().artifact(sha);
      // One copy is enough while it lasts: an artifact queue that still holds one is left alone.
      if (this.#artifacts.has(sha)) return;
      const url = await this.#createQueue(name, { MessageRetentionPeriod: String(this.#retention()) });
      const attrs = await this.#carry(`artifact ${sha.slice(0, 12)}`, toBuffer(bytes), { kind: str('artifact'), sha: str(sha) }, 'artifact');
      await this.#send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'artifact', MessageAttributes: attrs }));
      this.#artifacts.set(sha, Buffer.from(bytes));
    });
  }

  async getArtifact(sha: string): Promise<Uint8Array | null> {
    const known = this.#artifacts.get(sha);
    if (known) return known;
    return this.#run('get artifact', async () => {
      const m = await this.#peek(this.names().artifact(sha));
      if (!m || attr(m, 'sha') !== sha) return null;
      const bytes = await this.#bytesOf(m);
      if (!bytes) return null;
      this.#artifacts.set(sha, bytes);
      return bytes;
    });
  }

  async putJob(manifest: JobManifest): Promise<void> {
    this.#deletedJobs.delete(manifest.jobId);
    await this.#run('put job', async () => {
      const retention = { MessageRetentionPeriod: String(this.#retention()) };
      await this.#createQueue(this.names().results(manifest.jobId), retention);
      const url = await this.#createQueue(this.names().job(manifest.jobId), retention);
      await this.#send(new SendMessageCommand({ QueueUrl: url, MessageBody: JSON.stringify(manifest), MessageAttributes: { kind: str('job'), job: str(manifest.jobId) } }));
    });
    this.#manifests.set(manifest.jobId, structuredClone(manifest));
  }

  async getJob(jobId: string): Promise<JobManifest | null> {
    const known = this.#manifests.get(jobId);
    if (known) return structuredClone(known);
    if (this.#deletedJobs.has(jobId)) return null;
    return this.#run('get job', async () => {
      const m = await this.#peek(this.names().job(jobId));
      if (!m?.Body || attr(m, 'job') !== jobId) return null;
      let manifest: JobManifest;
      try {
        manifest = JSON.parse(m.Body) as JobManifest;
      } catch (err) {
        throw new MetaguardError('MG_ERR_BACKEND', `sqs job manifest ${jobId} is not valid JSON`, { cause: err });
      }
      this.#manifests.set(jobId, manifest);
      return structuredClone(manifest);
    });
  }

  async deleteJob(jobId: string): Promise<void> {
    this.#deletedJobs.add(jobId);
    if (this.#deletedJobs.size > 10_000) this.#deletedJobs.delete(this.#deletedJobs.values().next().value!);
    this.#jobResults.delete(jobId);
    this.#manifests.delete(jobId);
    await this.#run('delete job', async () => {
      for (const name of [this.names().results(jobId), this.names().job(jobId)]) {
        const url = await this.#urlOf(name);
        this.#urls.delete(name);
        if (url) await this.#send(new DeleteQueueCommand({ QueueUrl: url })).catch((err) => (notFound(err) ? undefined : Promise.reject(err)));
      }
    });
  }

  // --- batches (coordinator side) ------------------------------------------------------------------

  async enqueue(batches: BatchMessage[]): Promise<void> {
    for (const b of batches) {
      if (typeof b.id !== 'string' || b.id === '') throw new MetaguardError('MG_ERR_BACKEND', 'cannot enqueue a batch without an id');
      if (!priorities.includes(b.priority)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown priority ${String(b.priority)}`);
      if (!roleSet.has(b.role)) throw new MetaguardError('MG_ERR_BACKEND', `batch ${b.id}: unknown role ${String(b.role)}`);
    }
    await this.#run('enqueue', async () => {
      const url = this.#mainUrl!;
      // A job's results queue exists before its first batch: workers never create one (a late
      // duplicate of a finished job's batch must not bring its deleted queue back).
      for (const jobId of new Set(batches.map((b) => b.jobId))) await this.#createQueue(this.names().results(jobId), { MessageRetentionPeriod: String(this.#retention()) });
      const entries = await Promise.all(
        batches.map(async (b, i) => {
          const attrs: Record<string, MessageAttributeValue> = { id: str(b.id), job: str(b.jobId), role: str(b.role), priority: str(b.priority), attempts_before: num(0), ...(b.mac ? { mac: str(b.mac) } : {}) };
          return { Id: String(i), MessageBody: b.id, MessageAttributes: await this.#carry(`batch ${b.id}`, toBuffer(b.payload), attrs, b.id) };
        }),
      );
      // SendMessageBatch: up to 10 entries and 256 KiB in all.
      let chunk: typeof entries = [];
      let bytes = 0;
      const flush = async () => {
        if (!chunk.length) return;
        const r = await this.#send<{ Failed?: { Id?: string; Message?: string }[] }>(new SendMessageBatchCommand({ QueueUrl: url, Entries: chunk }));
        if (r.Failed?.length) throw new Error(`SendMessageBatch failed for ${r.Failed.length} of ${chunk.length}: ${r.Failed[0].Message ?? ''}`);
        chunk = [];
        bytes = 0;
      };
      for (const e of entries) {
        const size = attrBytes(e.MessageAttributes, e.MessageBody);
        if (chunk.length === 10 || bytes + size > SQS_MAX_MESSAGE_BYTES) await flush();
        chunk.push(e);
        bytes += size;
      }
      await flush();
    });
    this.#counters.dispatched += batches.length;
  }

  // --- batches (worker side) -----------------------------------------------------------------------

  #parse(m: Message, id: string): Parsed {
    const attemptsBefore = Math.max(0, Math.trunc(Number(attr(m, 'attempts_before') ?? 0)) || 0);
    const jobId = attr(m, 'job');
    const role = attr(m, 'role');
    const info = { ...(jobId ? { jobId } : {}), ...(role && roleSet.has(role) ? { role: role as Role } : {}) };
    if (!m.MessageAttributes?.payload?.BinaryValue && !attr(m, 's3_key')) return { ok: false, reason: 'malformed batch: no payload', attemptsBefore, ...info };
    if (!jobId) return { ok: false, reason: 'malformed batch: no job', attemptsBefore, ...info };
    if (!role || !roleSet.has(role)) return { ok: false, reason: 'malformed batch: bad role', attemptsBefore, ...info };
    const mac = attr(m, 'mac');
    const p = attr(m, 'priority');
    const priority = p !== undefined && (priorities as readonly string[]).includes(p) ? (p as Priority) : 'normal';
    return { ok: true, batch: { id, jobId, role: role as Role, priority, ...(mac ? { mac } : {}) }, attemptsBefore };
  }

  #leaseSeconds(leaseMs: number): number {
    return Math.max(1, Math.min(43_200, Math.ceil(leaseMs / 1000)));
  }

  async claimBatches(workerId: string, max: number, leaseMs: number): Promise<Claim[]> {
    const n = Math.min(1000, Math.floor(max));
    if (!(n >= 1)) return [];
    return this.#run('claim', async () => {
      const out: Claim[] = [];
      const lease = this.#leaseSeconds(leaseMs);
      while (out.length < n && this.#returned.length) {
        const x = this.#returned.shift()!;
        x.owner = workerId;
        this.#held.set(x.id, x);
        out.push(x.claim ? { ok: true, batch: x.claim } : { ok: false, id: x.id, reason: (x.parsed as { reason: string }).reason });
      }
      const received = this.#stash.splice(0, n - out.length);
      if (received.length) {
        // Stashed by waitForWork under its own lease: extend it to this claim's.
        await this.#changeVisibility(received.map((m) => m.ReceiptHandle!), lease);
      }
      while (out.length + received.length < n) {
        const got = await this.#receive(this.#mainUrl!, n - out.length - received.length, lease, 0);
        if (!got.length) break;
        received.push(...got);
        if (got.length < 10) break;
      }
      for (const m of received) {
        const claim = await this.#take(m, workerId, lease);
        if (claim) out.push(claim);
      }
      return out;
    });
  }

  async #changeVisibility(receipts: string[], seconds: number): Promise<Set<string>> {
    const failed = new Set<string>();
    for (let i = 0; i < receipts.length; i += 10) {
      const chunk = receipts.slice(i, i + 10);
      const r = await this.#send<{ Failed?: { Id?: string }[] }>(
        new ChangeMessageVisibilityBatchCommand({ QueueUrl: this.#mainUrl!, Entries: chunk.map((rh, j) => ({ Id: String(j), ReceiptHandle: rh, VisibilityTimeout: seconds })) }),
      );
      for (const f of r.Failed ?? []) failed.add(chunk[Number(f.Id)]);
    }
    return failed;
  }

  async #take(m: Message, workerId: string, lease: number): Promise<Claim | undefined> {
    const id = attr(m, 'id') ?? (m.Body && m.Body.length <= 512 ? m.Body : `sqs:${m.MessageId}`);
    const receiveCount = Math.max(1, Number(m.Attributes?.ApproximateReceiveCount ?? 1) || 1);
    const rec: Held = { id, message: m, receipts: [m.ReceiptHandle!], deadline: Date.now() + lease * 1000, parsed: this.#parse(m, id), receiveCount };
    const attempt = rec.parsed.attemptsBefore + receiveCount;
    if (receiveCount > 1 && (!this.#config.enable_requeue || attempt > this.#config.max_requeue_attempts + 1)) {
      // Received again after a lease ran out (a worker died or stalled): past the limit, it is dead.
      await this.#deadLetterRec(rec, `lease expired after ${attempt - 1} attempts`);
      return undefined;
    }
    const known = this.#held.get(id);
    if (known) {
      // The same batch id received again while it runs here (enqueued twice, or its lease ran out
      // meanwhile): the claim already held answers both, and holds the new lease.
      known.receipts.push(m.ReceiptHandle!);
      known.deadline = rec.deadline;
      return undefined;
    }
    rec.owner = workerId;
    this.#held.set(id, rec);
    this.#delayed.delete(id);
    if (!rec.parsed.ok) return { ok: false, id, reason: rec.parsed.reason };
    let payload: Buffer | undefined;
    try {
      payload = await this.#bytesOf(m);
    } catch (err) {
      return { ok: false, id, reason: `${(err as { code?: string }).code ?? 'MG_ERR_BACKEND'}: ${describe(err)}` };
    }
    if (!payload) return { ok: false, id, reason: 'malformed batch: no payload' };
    rec.claim = { ...rec.parsed.batch, payload, attempt };
    return { ok: true, batch: rec.claim };
  }

  async waitForWork(timeoutMs: number): Promise<void> {
    this.#checkOpen();
    if (this.#stash.length || this.#returned.length) return;
    const wait = Math.min(this.#config.long_polling_seconds ?? 20, Math.floor(timeoutMs / 1000));
    try {
      await this.#run('wait for work', async () => {
        if (wait <= 0) {
          await waitForAny(this.#events, ['closed'], timeoutMs);
          return;
        }
        const got = await this.#receive(this.#mainUrl!, 1, this.#leaseSeconds(this.#config.lease_seconds * 1000), wait);
        this.#stash.push(...got);
      });
    } catch (err) {
      if (this.#closed) return;
      throw err;
    }
  }

  #mine(workerId: string, id: string): Held | undefined {
    const x = this.#held.get(id);
    return x && x.owner === workerId ? x : undefined;
  }

  async renewLeases(workerId: string, ids: string[], leaseMs: number): Promise<string[]> {
    if (ids.length === 0) return [];
    const now = Date.now();
    const lost: string[] = [];
    const renew: Held[] = [];
    for (const id of ids) {
      const x = this.#mine(workerId, id);
      // A lease that ran out may already be someone else's: SQS made the message visible again.
      if (!x || x.deadline <= now) lost.push(id);
      else renew.push(x);
    }
    if (renew.length || this.#returned.length) {
      const lease = this.#leaseSeconds(leaseMs);
      const all = [...renew, ...this.#returned];
      const failed = await this.#run('renew leases', () => this.#changeVisibility(all.flatMap((x) => x.receipts), lease));
      for (const x of all) {
        if (x.receipts.some((r) => failed.has(r))) {
          if (renew.includes(x)) lost.push(x.id);
        } else x.deadline = now + lease * 1000;
      }
    }
    return lost;
  }

  async completeBatch(workerId: string, batch: Pick<BatchMessage, 'id' | 'jobId' | 'role'>, results: Uint8Array): Promise<boolean> {
    // Results first; the batch is deleted only once they were sent.
    await this.#run('complete batch', async () => {
      // No results queue: the job is finished (deleted) or expired, and nobody reads these results.
      const url = await this.#urlOf(this.names().results(batch.jobId));
      if (!url) return;
      const key = this.#config.hmac_key;
      const mac: Record<string, MessageAttributeValue> = key ? { mac: str(signResults(key, { jobId: batch.jobId, batchId: batch.id, role: batch.role, workerId }, results)) } : {};
      const attrs = await this.#carry(`results of batch ${batch.id}`, toBuffer(results), { kind: str('results'), batch: str(batch.id), role: str(batch.role), worker: str(workerId), ...mac }, batch.id);
      try {
        await this.#send(new SendMessageCommand({ QueueUrl: url, MessageBody: batch.id, MessageAttributes: attrs }));
      } catch (err) {
        if (!notFound(err)) throw err;
        this.#urls.delete(this.names().results(batch.jobId));
      }
    });
    const x = this.#mine(workerId, batch.id);
    if (!x) return false;
    this.#held.delete(batch.id);
    const expired = x.deadline <= Date.now();
    // Deleted even after its lease ran out: its results are in, and a redelivery would only be dropped.
    await this.#run('complete batch', () => this.#deleteAll(this.#mainUrl!, x.receipts));
    if (expired) return false;
    this.#counters.completed++;
    return true;
  }

  async releaseBatch(workerId: string, id: string, options: { delayMs: number; countAttempt: boolean; reason: string }): Promise<void> {
    this.#checkOpen();
    const x = this.#mine(workerId, id);
    if (!x) return;
    if (!x.parsed.ok || !x.claim) {
      await this.#run('release batch', () => this.#deadLetterRec(x, options.reason));
      return;
    }
    if (!options.countAttempt) {
      // Hand back: first in line for this process's next claim (its lease renewed meanwhile).
      this.#held.delete(id);
      delete x.owner;
      this.#returned.unshift(x);
      return;
    }
    const attempts = x.claim.attempt;
    if (attempts >= this.#config.max_requeue_attempts + 1) {
      await this.#run('release batch', () => this.#deadLetterRec(x, `${options.reason} (gave up after ${attempts} attempts)`));
      return;
    }
    const seconds = Math.max(0, Math.min(43_200, Math.ceil(options.delayMs / 1000)));
    // Visible again after the delay; the next receive counts the attempt (ApproximateReceiveCount).
    await this.#run('release batch', () => this.#send(new ChangeMessageVisibilityCommand({ QueueUrl: this.#mainUrl!, ReceiptHandle: x.receipts[0], VisibilityTimeout: seconds })));
    if (x.receipts.length > 1) await this.#run('release batch', () => this.#deleteAll(this.#mainUrl!, x.receipts.slice(1)));
    this.#held.delete(id);
    if (seconds > 0) this.#delayed.set(id, Date.now() + seconds * 1000);
    this.#counters.requeued++;
  }

  async deadLetter(workerId: string, id: string, reason: string): Promise<void> {
    this.#checkOpen();
    const x = this.#mine(workerId, id);
    if (!x) return;
    await this.#run('dead-letter', () => this.#deadLetterRec(x, reason));
  }

  async #deadLetterRec(x: Held, reason: string): Promise<void> {
    const p = x.parsed;
    const jobId = p.ok ? p.batch.jobId : p.jobId;
    const role = p.ok ? p.batch.role : p.role;
    const attempts = x.claim?.attempt ?? p.attemptsBefore + x.receiveCount;
    const m = x.message;
    const attrs: Record<string, MessageAttributeValue> = { ...(m.MessageAttributes ?? {}), id: str(x.id), reason: str(reason), attempts: num(attempts), dead_at: num(Date.now()) };
    // At most 10 attributes: drop what a dead letter does not need.
    delete attrs.attempts_before;
    delete attrs.kind;
    while (Object.keys(attrs).length > 10) delete attrs[Object.keys(attrs).find((k) => !['id', 'reason', 'attempts', 'dead_at', 'payload', 's3_key', 'sha256', 'job', 'role', 'priority'].includes(k)) ?? 'mac'];
    await this.#send(new SendMessageCommand({ QueueUrl: this.#dlqUrl!, MessageBody: m.Body || x.id, MessageAttributes: attrs }));
    const url = jobId !== undefined && !this.#deletedJobs.has(jobId) ? await this.#urlOf(this.names().results(jobId)) : undefined;
    if (url) {
      const key = this.#config.hmac_key;
      const mac: Record<string, MessageAttributeValue> = key && jobId !== undefined ? { mac: str(signDead(key, { jobId, batchId: x.id, role: role ?? '', reason })) } : {};
      await this.#send(new SendMessageCommand({ QueueUrl: url, MessageBody: x.id, MessageAttributes: { kind: str('dead'), batch: str(x.id), reason: str(reason), ...(role ? { role: str(role) } : {}), ...mac } })).catch((err) => {
        if (!notFound(err)) throw err;
      });
    }
    await this.#deleteAll(this.#mainUrl!, x.receipts);
    this.#held.delete(x.id);
  }

  async reclaimExpired(): Promise<ReclaimOutcome> {
    this.#checkOpen();
    // SQS makes a message whose visibility timeout ran out visible again by itself.
    return { requeued: [], deadLettered: [] };
  }

  // --- results -------------------------------------------------------------------------------------

  async readResults(jobId: string, cursor: string, blockMs: number): Promise<{ cursor: string; entries: ResultEntry[] }> {
    this.#checkOpen();
    const after = Math.max(0, Math.floor(Number(cursor) || 0));
    if (this.#deletedJobs.has(jobId)) return { cursor: String(after), entries: [] };
    let entries = this.#jobResults.get(jobId);
    if (!entries) this.#jobResults.set(jobId, (entries = []));
    const list = entries;
    const until = Date.now() + Math.max(0, blockMs);
    try {
      await this.#run('read results', async () => {
        const url = await this.#createQueue(this.names().results(jobId), { MessageRetentionPeriod: String(this.#retention()) });
        for (;;) {
          const left = until - Date.now();
          const got = await this.#receive(url, 10, 30, Math.max(0, Math.min(20, Math.floor(left / 1000))));
          for (const m of got) {
            const kind = attr(m, 'kind');
            const batchId = attr(m, 'batch') ?? '';
            if (kind === 'results') {
              const frame = await this.#bytesOf(m).catch(() => undefined);
              const mac = attr(m, 'mac');
              if (frame) list.push({ kind: 'results', batchId, role: (attr(m, 'role') ?? '') as Role, workerId: attr(m, 'worker') ?? '', frame, ...(mac ? { mac } : {}) });
            } else if (kind === 'dead') {
              const mac = attr(m, 'mac');
              const role = attr(m, 'role');
              list.push({ kind: 'dead', batchId, reason: attr(m, 'reason') ?? '', ...(role ? { role: role as Role } : {}), ...(mac ? { mac } : {}) });
            }
          }
          if (got.length) await this.#deleteAll(url, got.map((m) => m.ReceiptHandle!));
          if (list.length > after || this.#closed) return;
          const rest = until - Date.now();
          if (rest <= 0) return;
          if (rest < 1000) await waitForAny(this.#events, ['closed'], Math.min(rest, 100));
        }
      });
    } catch (err) {
      if (this.#closed) return { cursor: String(after), entries: [] };
      throw err;
    }
    const found = list.slice(after);
    return { cursor: String(after + found.length), entries: found };
  }

  // --- workers -------------------------------------------------------------------------------------

  async #registry(): Promise<string> {
    return this.#createQueue(this.names().workers, { MessageRetentionPeriod: '60' });
  }

  async heartbeat(info: WorkerInfo): Promise<void> {
    // Tag writes are rate-limited by AWS: at most one per worker per third of heartbeat_timeout.
    const last = this.#lastBeat.get(info.workerId) ?? 0;
    const every = Math.max(0, (this.#config.heartbeat_timeout * 1000) / 3);
    if (Date.now() - last < every && info.state !== 'draining') return;
    // A tag value holds 256 characters: the registry keeps what fits, the optional extras only if they do.
    const core = { h: info.host.slice(0, 64), p: info.pid, t: info.threads, s: info.startedAt, c: info.casesCompleted ?? 0, st: info.state === 'draining' ? 'd' : 'r', at: Date.now() };
    const i = info as unknown as Record<string, unknown>;
    const extra = Object.fromEntries(['version', 'node', 'codec', 'casesPerSec'].filter((k) => i[k] !== undefined).map((k) => [k, i[k]]));
    const full = JSON.stringify({ ...core, x: extra });
    const value = xmlSafe(full).length <= 256 ? full : JSON.stringify(core);
    await this.#run('heartbeat', async () => {
      await this.#send(new TagQueueCommand({ QueueUrl: await this.#registry(), Tags: { [`w:${info.workerId}`.slice(0, 128)]: xmlSafe(value).slice(0, 256) } }));
    });
    this.#lastBeat.set(info.workerId, Date.now());
  }

  async removeWorker(workerId: string): Promise<void> {
    this.#lastBeat.delete(workerId);
    await this.#run('remove worker', async () => {
      await this.#send(new UntagQueueCommand({ QueueUrl: await this.#registry(), TagKeys: [`w:${workerId}`.slice(0, 128)] }));
    });
  }

  async activeWorkers(): Promise<WorkerInfo[]> {
    const tags = await this.#run('active workers', async () => (await this.#send<{ Tags?: Record<string, string> }>(new ListQueueTagsCommand({ QueueUrl: await this.#registry() }))).Tags ?? {});
    const since = Date.now() - this.#config.heartbeat_timeout * 1000;
    const out: WorkerInfo[] = [];
    for (const [key, value] of Object.entries(tags)) {
      if (!key.startsWith('w:')) continue;
      try {
        const v = JSON.parse(value) as { h?: string; p?: number; t?: number; s?: number; c?: number; st?: string; at?: number; x?: Record<string, unknown> };
        if (!(Number(v.at) >= since)) continue;
        const extra: Record<string, unknown> = {};
        if (v.x && typeof v.x === 'object') {
          if (typeof v.x.version === 'string') extra.version = v.x.version;
          if (typeof v.x.node === 'string') extra.node = v.x.node;
          if (v.x.codec === 'native' || v.x.codec === 'js') extra.codec = v.x.codec;
          if (typeof v.x.casesPerSec === 'number' && Number.isFinite(v.x.casesPerSec)) extra.casesPerSec = v.x.casesPerSec;
        }
        out.push({ ...extra, workerId: key.slice(2), host: String(v.h ?? ''), pid: Number(v.p ?? 0), threads: Number(v.t ?? 0), startedAt: Number(v.s ?? 0), casesCompleted: Number(v.c ?? 0), state: v.st === 'd' ? 'draining' : 'running', lastHeartbeat: Number(v.at) });
      } catch {
        // not a heartbeat of ours
      }
    }
    return out.sort((a, b) => a.workerId.localeCompare(b.workerId));
  }

  // --- stats and dead letters ----------------------------------------------------------------------

  async #approximate(url: string): Promise<{ visible: number; invisible: number }> {
    const a = await this.#send<{ Attributes?: Record<string, string> }>(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
    return { visible: Number(a.Attributes?.ApproximateNumberOfMessages ?? 0), invisible: Number(a.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0) };
  }

  async stats(): Promise<SqsQueueStats> {
    const [main, dead] = await this.#run('stats', () => Promise.all([this.#approximate(this.#mainUrl!), this.#approximate(this.#dlqUrl!)]));
    const now = Date.now();
    for (const [id, due] of this.#delayed) if (due <= now) this.#delayed.delete(id);
    const workers = await this.activeWorkers();
    const pending = Object.fromEntries(priorities.map((p) => [p, 0])) as Record<Priority, number>;
    pending.normal = main.visible;
    return {
      pending,
      inflight: this.#held.size,
      delayed: this.#delayed.size,
      dead: dead.visible + dead.invisible,
      completed: this.#counters.completed,
      dispatched: this.#counters.dispatched,
      requeued: this.#counters.requeued,
      workers,
      sqs: { queueUrl: this.#mainUrl!, dlqUrl: this.#dlqUrl!, note: STATS_NOTE },
    };
  }

  /**
   * Receives every dead letter (hidden for 60 s while scanning), hands them to `fn`, and makes the ones
   * `fn` did not delete visible again.
   */
  async #scanDead<T>(op: string, fn: (msgs: Message[]) => Promise<{ value: T; deleted: Set<Message> }>): Promise<T> {
    return this.#run(op, async () => {
      const msgs: Message[] = [];
      for (;;) {
        const got = await this.#receive(this.#dlqUrl!, 10, 60, 0);
        if (!got.length || msgs.length >= MAX_DLQ_SCAN) break;
        msgs.push(...got);
      }
      try {
        const { value, deleted } = await fn(msgs);
        const back = msgs.filter((m) => !deleted.has(m)).map((m) => m.ReceiptHandle!);
        for (let i = 0; i < back.length; i += 10) {
          const chunk = back.slice(i, i + 10);
          await this.#send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: this.#dlqUrl!, Entries: chunk.map((r, j) => ({ Id: String(j), ReceiptHandle: r, VisibilityTimeout: 0 })) }));
        }
        return value;
      } catch (err) {
        await Promise.allSettled(msgs.map((m) => this.#send(new ChangeMessageVisibilityCommand({ QueueUrl: this.#dlqUrl!, ReceiptHandle: m.ReceiptHandle!, VisibilityTimeout: 0 }))));
        throw err;
      }
    });
  }

  #deadEntry(m: Message): DeadEntry {
    const e: DeadEntry = {
      id: attr(m, 'id') ?? m.Body ?? `sqs:${m.MessageId}`,
      reason: attr(m, 'reason') ?? 'moved by the queue\'s redrive policy (received too often)',
      attempts: Math.max(0, Number(attr(m, 'attempts') ?? m.Attributes?.ApproximateReceiveCount ?? 0) || 0),
      deadAt: Number(attr(m, 'dead_at') ?? m.Attributes?.SentTimestamp ?? 0) || 0,
    };
    const job = attr(m, 'job');
    const role = attr(m, 'role');
    if (job) e.jobId = job;
    if (role && roleSet.has(role)) e.role = role as Role;
    return e;
  }

  async listDead(limit = 100): Promise<DeadEntry[]> {
    const n = Math.floor(limit);
    if (!(n >= 1)) return [];
    const all = await this.#scanDead('list dead', async (msgs) => ({ value: msgs.map((m) => this.#deadEntry(m)), deleted: new Set<Message>() }));
    return all.sort((a, b) => a.deadAt - b.deadAt).slice(0, n);
  }

  async retryDead(id?: string): Promise<number> {
    return this.#scanDead('retry dead', async (msgs) => {
      const deleted = new Set<Message>();
      for (const m of msgs) {
        const e = this.#deadEntry(m);
        if (id !== undefined && e.id !== id) continue;
        if (!e.jobId || !e.role || (!m.MessageAttributes?.payload?.BinaryValue && !attr(m, 's3_key'))) continue;
        const attrs: Record<string, MessageAttributeValue> = { ...(m.MessageAttributes ?? {}), attempts_before: num(0) };
        for (const k of ['reason', 'attempts', 'dead_at']) delete attrs[k];
        await this.#send(new SendMessageCommand({ QueueUrl: this.#mainUrl!, MessageBody: m.Body || e.id, MessageAttributes: attrs }));
        await this.#deleteAll(this.#dlqUrl!, [m.ReceiptHandle!]);
        deleted.add(m);
      }
      return { value: deleted.size, deleted };
    });
  }

  async purgeDead(): Promise<number> {
    // Received and deleted rather than PurgeQueue (which SQS allows once a minute, and finishes later).
    return this.#scanDead('purge dead', async (msgs) => {
      await this.#deleteAll(this.#dlqUrl!, msgs.map((m) => m.ReceiptHandle!));
      return { value: msgs.length, deleted: new Set(msgs) };
    });
  }
}
