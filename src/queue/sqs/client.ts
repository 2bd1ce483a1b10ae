/**
 * The SQS backend's plumbing: the SQS and S3 clients, queue URLs (created when missing), messages
 * carrying bytes inline or through S3, and the calls every part of the backend makes (receive,
 * delete, change visibility) in SQS's batches of ten.
 */
import { EventEmitter } from 'node:events';
import {
  SQSClient,
  CreateQueueCommand,
  GetQueueUrlCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  DeleteMessageBatchCommand,
  ChangeMessageVisibilityBatchCommand,
  type Message,
  type MessageAttributeValue,
} from '@aws-sdk/client-sqs';
import { S3Client, PutObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { MetaguardError, invalidOption } from '../../errors.js';
import type { Logger } from '../../observe/log.js';
import type { QueueConfig } from '../../options/queue.js';
import { sha256 } from '../../util/hash.js';

/** SQS's message size limit, less room for what the estimate below does not count. */
export const SQS_MAX_MESSAGE_BYTES = 256 * 1024 - 2048;

export function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name && err.name !== 'Error' ? err.name + ': ' : ''}${err.message}`;
  return String(err);
}

export function notFound(err: unknown): boolean {
  const e = err as { name?: string; Code?: string; code?: string };
  return /QueueDoesNotExist|NonExistentQueue/.test(`${e?.name ?? ''} ${e?.Code ?? ''} ${e?.code ?? ''}`);
}

export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const hash = (s: string, n: number) => sha256(s).slice(0, n);

/** SQS string attributes allow only XML characters: anything else becomes U+FFFD. */
export function xmlSafe(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu, '\ufffd');
}

export function attr(m: Message, name: string): string | undefined {
  const a = m.MessageAttributes?.[name];
  return a?.StringValue ?? undefined;
}

export function str(v: string): MessageAttributeValue {
  return { DataType: 'String', StringValue: xmlSafe(v) };
}

export function num(v: number): MessageAttributeValue {
  return { DataType: 'Number', StringValue: String(v) };
}

export function attrBytes(attrs: Record<string, MessageAttributeValue>, body: string): number {
  let n = Buffer.byteLength(body);
  for (const [k, v] of Object.entries(attrs)) n += k.length + (v.DataType?.length ?? 0) + (v.StringValue !== undefined ? Buffer.byteLength(v.StringValue) : (v.BinaryValue?.byteLength ?? 0));
  return n;
}

/** The region of an SQS queue URL (https://sqs.<region>.amazonaws.com/...). */
export function regionOfQueueUrl(url: string): string | undefined {
  return /^https?:\/\/sqs[.-]([a-z0-9-]+)\.amazonaws\.com/.exec(url)?.[1];
}

export interface SqsNames {
  main: string;
  dlq: string;
  workers: string;
  results(jobId: string): string;
  job(jobId: string): string;
  artifact(sha: string): string;
}

export class SqsClientHost {
  readonly events = new EventEmitter();
  readonly sqs: SQSClient;
  readonly s3: S3Client | undefined;
  readonly name: string;
  readonly names: SqsNames;
  readonly abort = new AbortController();
  readonly #urls = new Map<string, string>();
  mainUrl: string | undefined;
  dlqUrl: string | undefined;
  closed = false;
  #connecting: Promise<void> | undefined;

  constructor(
    private readonly config: QueueConfig,
    readonly logger: Logger | undefined,
  ) {
    this.events.setMaxListeners(0);
    this.name = config.queue_url !== undefined ? config.queue_url.replace(/\/+$/, '').split('/').pop()! : config.queue;
    const region = config.region ?? (config.queue_url ? regionOfQueueUrl(config.queue_url) : undefined) ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    const credentials = config.aws_access_key_id !== undefined && config.aws_secret_access_key !== undefined ? { accessKeyId: config.aws_access_key_id, secretAccessKey: config.aws_secret_access_key } : undefined;
    const common = { region, maxAttempts: 3, ...(credentials ? { credentials } : {}), ...(config.endpoint_url ? { endpoint: config.endpoint_url } : {}) };
    this.sqs = new SQSClient(common);
    this.s3 = config.s3_bucket !== undefined ? new S3Client({ ...common, forcePathStyle: config.endpoint_url !== undefined }) : undefined;
    const n = this.name;
    this.names = { main: n, dlq: `${n}-dlq`, workers: `${n}-workers`, results: (j) => `${n}-r-${hash(j, 24)}`, job: (j) => `${n}-j-${hash(j, 24)}`, artifact: (s) => `${n}-a-${s.slice(0, 24)}` };
  }

  checkOpen(): void {
    if (this.closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `sqs backend for queue ${this.name} is closed`);
  }

  /** Runs `fn` connected; an SQS failure becomes MG_ERR_BACKEND naming the operation and the queue. */
  async run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.checkOpen();
    try {
      await this.ensure();
      return await fn();
    } catch (err) {
      if (err instanceof MetaguardError) throw err;
      if (this.closed) throw new MetaguardError('MG_ERR_BACKEND_CLOSED', `sqs backend closed during ${op}`, { cause: err });
      throw new MetaguardError('MG_ERR_BACKEND', `sqs ${op} failed (queue ${this.name}): ${describe(err)}`, { cause: err });
    }
  }

  send<T>(command: { input: unknown }): Promise<T> {
    return this.sqs.send(command as never, { abortSignal: this.abort.signal }) as Promise<T>;
  }

  async ensure(): Promise<void> {
    this.checkOpen();
    if (this.mainUrl && this.dlqUrl) return;
    await (this.#connecting ??= this.#connect().finally(() => (this.#connecting = undefined)));
  }

  async #connect(): Promise<void> {
    const c = this.config;
    let main = c.queue_url;
    if (main === undefined) {
      try {
        main = (await this.send<{ QueueUrl?: string }>(new GetQueueUrlCommand({ QueueName: this.name }))).QueueUrl;
      } catch (err) {
        if (!notFound(err)) throw new MetaguardError('MG_ERR_BACKEND', `cannot reach sqs for queue ${this.name}: ${describe(err)}`, { cause: err });
      }
    }
    let redrive: string | undefined;
    if (main !== undefined) {
      try {
        const a = await this.send<{ Attributes?: Record<string, string> }>(new GetQueueAttributesCommand({ QueueUrl: main, AttributeNames: ['RedrivePolicy'] }));
        redrive = a.Attributes?.RedrivePolicy;
      } catch (err) {
        throw new MetaguardError('MG_ERR_BACKEND', `cannot reach sqs queue ${main}: ${describe(err)}`, { cause: err });
      }
    }
    let dlq: string | undefined;
    let target: string | undefined;
    try {
      target = redrive ? (JSON.parse(redrive) as { deadLetterTargetArn?: string }).deadLetterTargetArn : undefined;
    } catch {
      throw new MetaguardError('MG_ERR_BACKEND', `sqs queue ${main}: its RedrivePolicy is not JSON`);
    }
    if (typeof target === 'string') dlq = (await this.send<{ QueueUrl?: string }>(new GetQueueUrlCommand({ QueueName: target.split(':').pop()! }))).QueueUrl;
    dlq ??= await this.createQueue(this.names.dlq, { MessageRetentionPeriod: String(this.retention()) });
    if (main === undefined) {
      const arn = (await this.send<{ Attributes?: Record<string, string> }>(new GetQueueAttributesCommand({ QueueUrl: dlq, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn;
      main = await this.createQueue(this.name, {
        VisibilityTimeout: String(Math.ceil(c.lease_seconds)),
        ...(arn ? { RedrivePolicy: JSON.stringify({ deadLetterTargetArn: arn, maxReceiveCount: c.max_requeue_attempts + 2 }) } : {}),
      });
    }
    this.mainUrl = main;
    this.dlqUrl = dlq;
  }

  retention(): number {
    return Math.min(1_209_600, Math.max(60, this.config.result_ttl_seconds));
  }

  async createQueue(name: string, attributes: Record<string, string>): Promise<string> {
    const known = this.#urls.get(name);
    if (known) return known;
    let url: string | undefined;
    try {
      url = (await this.send<{ QueueUrl?: string }>(new CreateQueueCommand({ QueueName: name, Attributes: attributes }))).QueueUrl;
    } catch (err) {
      // Created earlier with other attributes: use it as it is.
      if (!/QueueAlreadyExists|QueueNameExists/.test(describe(err))) throw err;
      url = (await this.send<{ QueueUrl?: string }>(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
    }
    if (!url) throw new Error(`CreateQueue ${name} returned no URL`);
    this.#urls.set(name, url);
    return url;
  }

  /** The URL of queue `name`, or undefined when it does not exist. `fresh` asks SQS even if it was known. */
  async urlOf(name: string, fresh = false): Promise<string | undefined> {
    const known = this.#urls.get(name);
    if (known && !fresh) return known;
    try {
      const url = (await this.send<{ QueueUrl?: string }>(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
      if (url) this.#urls.set(name, url);
      return url;
    } catch (err) {
      if (!notFound(err)) throw err;
      this.#urls.delete(name);
      return undefined;
    }
  }

  forget(name: string): void {
    this.#urls.delete(name);
  }

  /** Message attributes carrying `bytes` inline, or through S3 when the message would be too large. */
  async carry(what: string, bytes: Buffer, attrs: Record<string, MessageAttributeValue>, body: string): Promise<Record<string, MessageAttributeValue>> {
    const inline = { ...attrs, payload: { DataType: 'Binary', BinaryValue: bytes } };
    if (attrBytes(inline, body) <= SQS_MAX_MESSAGE_BYTES) return inline;
    if (!this.s3 || this.config.s3_bucket === undefined) {
      throw invalidOption('queue-config.s3_bucket', `is needed: ${what} is ${bytes.byteLength} bytes, over SQS's 256 KiB message limit`);
    }
    const digest = sha256(bytes);
    const key = `${this.name}/${digest}`;
    await this.s3.send(new PutObjectCommand({ Bucket: this.config.s3_bucket, Key: key, Body: bytes }), { abortSignal: this.abort.signal });
    return { ...attrs, s3_key: str(key), sha256: str(digest) };
  }

  /** The bytes a message carries (inline or in S3, verified against its sha256). */
  async bytesOf(m: Message): Promise<Buffer | undefined> {
    const inline = m.MessageAttributes?.payload?.BinaryValue;
    if (inline) return Buffer.from(inline);
    const key = attr(m, 's3_key');
    const digest = attr(m, 'sha256');
    if (!key || !digest) return undefined;
    if (!this.s3 || this.config.s3_bucket === undefined) throw new MetaguardError('MG_ERR_CODEC', `message refers to s3 object ${key}, but queue-config.s3_bucket is not set`);
    if (!key.startsWith(`${this.name}/`)) throw new MetaguardError('MG_ERR_CODEC', `message refers to s3 object ${key.slice(0, 100)}, outside this queue's prefix ${this.name}/`);
    const out = await this.s3.send(new GetObjectCommand({ Bucket: this.config.s3_bucket, Key: key }), { abortSignal: this.abort.signal });
    const bytes = Buffer.from(await out.Body!.transformToByteArray());
    if (sha256(bytes) !== digest) throw new MetaguardError('MG_ERR_CODEC', `s3 object ${key} does not match its sha256 (tampered or corrupt)`);
    return bytes;
  }

  async receive(url: string, max: number, visibility: number, wait: number): Promise<Message[]> {
    const r = await this.send<{ Messages?: Message[] }>(
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

  async deleteAll(url: string, receipts: string[]): Promise<void> {
    for (let i = 0; i < receipts.length; i += 10) {
      const chunk = receipts.slice(i, i + 10);
      await this.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: chunk.map((r, j) => ({ Id: String(j), ReceiptHandle: r })) }));
    }
  }

  /** Sets the visibility timeout of `receipts` on `url`; returns the receipts SQS refused (no longer held). */
  async changeVisibility(url: string, receipts: string[], seconds: number): Promise<Set<string>> {
    const failed = new Set<string>();
    for (let i = 0; i < receipts.length; i += 10) {
      const chunk = receipts.slice(i, i + 10);
      const r = await this.send<{ Failed?: { Id?: string }[] }>(new ChangeMessageVisibilityBatchCommand({ QueueUrl: url, Entries: chunk.map((rh, j) => ({ Id: String(j), ReceiptHandle: rh, VisibilityTimeout: seconds })) }));
      for (const f of r.Failed ?? []) failed.add(chunk[Number(f.Id)]);
    }
    return failed;
  }

  destroy(): void {
    this.closed = true;
    this.abort.abort();
    this.events.emit('closed');
    this.sqs.destroy();
    this.s3?.destroy();
  }
}
