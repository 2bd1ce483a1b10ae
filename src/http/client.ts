/**
 * The HTTP client a case thread calls an endpoint implementation with: one undici `Pool` per origin
 * and thread (keep-alive connections, as many as the cases in flight), the shared rate limit, and
 * retries with exponential backoff and full jitter on connection errors, 429 and 503, honouring
 * `Retry-After`.
 *
 * The retry loop is ours rather than undici's RetryAgent because it must know the case's deadline
 * (never sleep past it: answer with the last status instead), take a rate-limit slot per attempt,
 * and record every attempt's latency and status for the report and the metrics.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { displayUrl, type HttpMethod } from './endpoint.js';
import { reserveSlot } from './rate-limit.js';
import type { HttpTrace } from '../core/protocol.js';

/** What a case thread gets to call an endpoint: the description with header values filled in. */
export interface HttpTarget {
  url: string;
  method: HttpMethod;
  headers: Record<string, string>;
  /** Values filled in from the environment: removed from every message and body preview. */
  secrets: string[];
  retries: number;
}

/** A module's `http` export, minus what the coordinator took from it (url, method, headers). */
export interface HttpShape {
  /** Maps a case's arguments to a request. @defaultValue `{ body: args }` */
  toRequest?(args: unknown[]): { body?: unknown; headers?: Record<string, string>; path?: string };
  /** Maps a 2xx response's JSON body to the output. @defaultValue the body itself */
  fromResponse?(body: unknown, res: { status: number; headers: Record<string, string | string[] | undefined> }): unknown;
}

/** The running case: its deadline's signal, its trace, and a way to exclude rate-limit waits from its time. */
export interface CallScope {
  signal: AbortSignal;
  trace: HttpTrace;
  /** Moves the case's deadline later by `ms` (time spent waiting for our own rate limit). */
  extend(ms: number): void;
  remainingMs(): number;
}

/** An HTTP outcome that is a case result with a code (E_HTTP_STATUS, E_HTTP_BODY, E_HTTP_CONNECT). */
export class HttpCaseError extends Error {
  readonly code: 'E_HTTP_STATUS' | 'E_HTTP_BODY' | 'E_HTTP_CONNECT';
  readonly status?: number;
  /** First 200 bytes of the response body. */
  readonly body?: string;

  constructor(code: HttpCaseError['code'], message: string, extra: { status?: number; body?: string } = {}) {
    super(message);
    this.name = 'HttpCaseError';
    this.code = code;
    if (extra.status !== undefined) this.status = extra.status;
    if (extra.body !== undefined) this.body = extra.body;
  }
}

const MAX_BODY_BYTES = 16 * 1024 * 1024;
const BODY_PREVIEW_BYTES = 200;
const BACKOFF_BASE_MS = 100;
const BACKOFF_MAX_MS = 10_000;
/** Connection failures that retrying cannot fix (TLS verification, bad arguments). */
const NOT_TRANSIENT = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'UND_ERR_INVALID_ARG',
]);

/** Pools live as long as the thread: keep-alive connections serve every chunk that follows. */
const pools = new Map<string, Pool>();

function poolFor(origin: string, connections: number): Pool {
  const key = `${origin} ${connections}`;
  let pool = pools.get(key);
  if (!pool) {
    // No undici timeouts: the case deadline aborts a request that hangs (headers or body).
    pool = new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 30_000, headersTimeout: 0, bodyTimeout: 0 });
    pools.set(key, pool);
  }
  return pool;
}

/** `Retry-After` as milliseconds: delta-seconds or an HTTP date; undefined when absent or malformed. */
export function retryAfterMs(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Full-jitter exponential backoff (AWS architecture blog, "Exponential Backoff And Jitter"). */
export function backoffMs(attempt: number, random = Math.random): number {
  return random() * Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
}

export class HttpCaller {
  readonly #target: HttpTarget;
  readonly #shape: HttpShape;
  readonly #pool: Pool;
  readonly #base: URL;
  readonly #rate: { state: SharedArrayBuffer; rps: number } | undefined;

  constructor(target: HttpTarget, shape: HttpShape, concurrency: number, rate?: { state: SharedArrayBuffer; rps: number }) {
    this.#target = target;
    this.#shape = shape;
    this.#base = new URL(target.url);
    this.#pool = poolFor(this.#base.origin, Math.max(1, concurrency));
    this.#rate = rate;
  }

  /** Removes every secret value from a string that may end up in a report. */
  redact(text: string): string {
    let out = text;
    for (const s of this.#target.secrets) if (s.length >= 4) out = out.split(s).join('[REDACTED]');
    return out;
  }

  async call(args: unknown[], scope: CallScope): Promise<unknown> {
    scope.trace.calls++;
    const parts = this.#shape.toRequest ? this.#shape.toRequest(args) : { body: args };
    if (parts === null || typeof parts !== 'object') throw new TypeError('http.toRequest must return an object { body?, headers?, path? }');
    const target = parts.path === undefined ? this.#base : new URL(String(parts.path), this.#base);
    if (target.origin !== this.#base.origin) throw new TypeError(`http.toRequest: path must stay on ${this.#base.origin}`);
    const headers: Record<string, string> = { ...this.#target.headers };
    let body: string | Uint8Array | undefined;
    if (parts.body !== undefined) {
      if (typeof parts.body === 'string' || parts.body instanceof Uint8Array) body = parts.body;
      else {
        body = JSON.stringify(parts.body);
        if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
      }
    }
    for (const [k, v] of Object.entries(parts.headers ?? {})) headers[k] = String(v);
    const method = this.#target.method;
    const where = `${method} ${displayUrl(target.href)}`;
    const path = target.pathname + target.search;

    for (let attempt = 0; ; attempt++) {
      if (this.#rate) {
        const waitMs = reserveSlot(this.#rate.state, this.#rate.rps);
        if (waitMs >= 1) {
          scope.extend(waitMs);
          await sleep(waitMs, undefined, { signal: scope.signal });
        }
      }
      const started = performance.now();
      let status: number;
      let resHeaders: Record<string, string | string[] | undefined>;
      let bytes: Buffer;
      try {
        const res = await this.#pool.request({ path, method, headers, body: body ?? null, signal: scope.signal });
        status = res.statusCode;
        resHeaders = res.headers;
        bytes = await readCapped(res.body, MAX_BODY_BYTES);
      } catch (err) {
        const ms = performance.now() - started;
        if (scope.signal.aborted) {
          scope.trace.ms.push(ms);
          scope.trace.status.push(-1);
          throw scope.signal.reason;
        }
        scope.trace.ms.push(ms);
        scope.trace.status.push(0);
        const e = err as { code?: string; message?: string };
        if (e.code === 'MG_BODY_TOO_LARGE') throw new HttpCaseError('E_HTTP_BODY', `${where}: ${e.message}`);
        const failure = new HttpCaseError('E_HTTP_CONNECT', this.redact(`${where}: ${e.code ?? 'error'}: ${e.message ?? String(err)}`.slice(0, 300)));
        // A certificate the process does not trust will not be trusted a moment later.
        if (e.code !== undefined && NOT_TRANSIENT.has(e.code)) throw failure;
        await this.#beforeRetry(attempt, undefined, scope, failure);
        continue;
      }
      scope.trace.ms.push(performance.now() - started);
      scope.trace.status.push(status);
      if (status >= 200 && status < 300) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(bytes.toString('utf8'));
        } catch (err) {
          throw new HttpCaseError('E_HTTP_BODY', `${where} answered ${status} with a body that is not JSON (${(err as Error).message})`, { status, body: this.#preview(bytes) });
        }
        return this.#shape.fromResponse ? this.#shape.fromResponse(parsed, { status, headers: resHeaders }) : parsed;
      }
      const failure = new HttpCaseError('E_HTTP_STATUS', `${where} answered ${status}`, { status, body: this.#preview(bytes) });
      if (status !== 429 && status !== 503) throw failure;
      await this.#beforeRetry(attempt, retryAfterMs(resHeaders['retry-after']), scope, failure);
    }
  }

  /** Sleeps before the next attempt, or throws `failure` when out of retries or of time. */
  async #beforeRetry(attempt: number, retryAfter: number | undefined, scope: CallScope, failure: HttpCaseError): Promise<void> {
    if (attempt >= this.#target.retries) throw failure;
    const delay = Math.max(retryAfter ?? 0, backoffMs(attempt));
    // Sleeping past the deadline would turn an informative status into E_TIMEOUT.
    if (delay >= scope.remainingMs()) throw failure;
    await sleep(delay, undefined, { signal: scope.signal });
  }

  #preview(bytes: Buffer): string {
    return this.redact(bytes.subarray(0, BODY_PREVIEW_BYTES).toString('utf8'));
  }
}

async function readCapped(body: AsyncIterable<Buffer>, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > max) {
      const err = new Error(`response body exceeds ${max} bytes`) as Error & { code: string };
      err.code = 'MG_BODY_TOO_LARGE';
      (body as { destroy?: () => void }).destroy?.();
      throw err;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
