/**
 * Every error metaguard raises carries a stable `code`. Callers branch on the code (and on whether it
 * is `retryable`), never on the message text. Errors cross thread and wire boundaries as plain
 * `{ code, message, retryable }` objects (see `toErrorInfo`, `wireError`), because classes do not
 * survive structured clone and text does not survive being matched on. docs/errors.md documents every
 * code and what the operator does about it; test/errors-doc.test.ts keeps the two in step.
 */

/** Outcome codes of a single case: a case that fails this way is a result, not a redelivery. */
export const CaseErrorCodes = {
  E_TIMEOUT: 'the case exceeded its time limit',
  E_OOM: 'the case exhausted its memory limit',
  E_THROW: 'the implementation threw',
  E_OUTPUT: 'the implementation returned a value that is not data (a function, a symbol, a Proxy of an object): under --isolation process checks are given a copy of each output, and this one cannot be copied',
  E_CRASH: 'the implementation exited its thread or process',
  E_PERMISSION: 'the implementation attempted an operation its isolation forbids (signals, child processes, files outside the artifact cache, …)',
  E_DELIVERY: 'the case could not be delivered to a worker within its attempts',
  E_HTTP_STATUS: 'an endpoint answered a non-2xx status (after retries for 429 and 503)',
  E_HTTP_BODY: 'an endpoint answered 2xx with a body that is not JSON (or larger than 16 MiB)',
  E_HTTP_CONNECT: 'an endpoint could not be reached or dropped the connection (after retries)',
} as const;
export type CaseErrorCode = keyof typeof CaseErrorCodes;

/** Codes of errors raised by metaguard itself (bad input, backend faults, codec faults). */
export const ErrorCodes = {
  MG_ERR_INVALID_OPTION: 'an option, flag, environment variable or config key is invalid',
  MG_ERR_UNKNOWN_OPTION: 'an option or config key is not known',
  MG_ERR_FILE_NOT_FOUND: 'a file named on the command line does not exist',
  MG_ERR_INVALID_TASK: 'a task module does not export a valid spec',
  MG_ERR_INVALID_IMPLEMENTATION: 'an implementation module does not export solve',
  MG_ERR_MODULE_LOAD: 'a task or implementation module failed to load (here or on a worker): the run stops before any verdict',
  MG_ERR_INVALID_POLICY: 'a policy file is malformed',
  MG_ERR_TASK_GEN: 'the task generator failed or returned malformed cases',
  MG_ERR_BACKEND: 'the queue backend failed',
  MG_ERR_BACKEND_CLOSED: 'the queue backend is closed',
  MG_ERR_BACKEND_AUTH: 'the queue backend refused the credentials (a configuration error: the worker exits 78)',
  MG_ERR_ARTIFACT: 'an artifact is missing or does not match its hash',
  MG_ERR_CODEC: 'a frame could not be decoded',
  MG_ERR_HMAC: 'a message failed its HMAC check, or a signed batch reached a worker without hmac_key',
  MG_ERR_BACKEND_OOM: 'the queue backend refused a write because it is out of memory (Redis maxmemory)',
  MG_ERR_QUEUE_STATE_LOST: 'batches of the running job vanished from the backend and could not be republished',
  MG_ERR_MALFORMED_RECORD: 'a record read back from the backend does not match its schema (skipped, never trusted)',
  MG_ERR_MALFORMED_BATCH: 'a batch is not well-formed (no id, payload or job, an unknown role or priority): refused at enqueue, dead-lettered at claim, never retried',
  MG_ERR_LEASE_EXPIRED: 'a batch\'s lease expired more than max_requeue_attempts times (its workers died, hung or lost the backend): dead-lettered',
  MG_ERR_WORKER: 'a worker failed to prepare or run a batch for a reason of its own (disk, an unexpected exception): the batch is retried',
  MG_ERR_UNCODED: 'a dead letter written by an older metaguard carries free text only (shown as it is)',
  MG_ERR_POOL_CLOSED: 'the case pool is closed',
  MG_ERR_NATIVE: 'the native module could not be used',
  MG_ERR_HTTP_CONFIG: 'an endpoint description is invalid, or a header names a variable that is not provided',
  MG_ERR_DASHBOARD_ASSETS: 'the dashboard page could not be loaded or built',
  MG_ERR_CANCELLED: 'the evaluation was cancelled from the dashboard (its job was withdrawn)',
  MG_ERR_INCOMPLETE: 'some cases could not be delivered: the verdict is withheld (see --allow-incomplete)',
  MG_ERR_DEADLINE: 'the evaluation did not finish within --deadline-s',
  MG_ERR_NO_WORKERS: 'no queue worker was alive for --no-worker-timeout-s',
  MG_ERR_INTERRUPTED: 'the evaluation was stopped by SIGINT or SIGTERM (a draining worker hands its batches back with it)',
} as const;
export type MetaguardErrorCode = keyof typeof ErrorCodes;

/**
 * Codes whose failure another attempt may cure (a backend outage, a worker's own fault, an endpoint
 * this worker cannot call but another may). Everything else is final: a malformed or tampered batch
 * fails the same way on every worker, and a case outcome (E_*) is a result, not a redelivery.
 */
const RETRYABLE: ReadonlySet<string> = new Set<MetaguardErrorCode>(['MG_ERR_BACKEND', 'MG_ERR_HTTP_CONFIG', 'MG_ERR_WORKER']);

/** Whether an error with this code may succeed when tried again (by code, never by text). */
export function isRetryableCode(code: string): boolean {
  return RETRYABLE.has(code);
}

/** Every code metaguard defines (MG_ERR_* and the per-case E_*). */
export const allCodes: readonly string[] = [...Object.keys(ErrorCodes), ...Object.keys(CaseErrorCodes)];

export class MetaguardError extends Error {
  readonly code: MetaguardErrorCode;
  /** Field (flag, env variable, config key) the error is about, when there is one. */
  readonly field?: string;
  /** Whether trying again may succeed; from the code unless the raiser knows better. */
  readonly retryable: boolean;

  constructor(code: MetaguardErrorCode, message: string, options: { field?: string; cause?: unknown; retryable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MetaguardError';
    this.code = code;
    this.retryable = options.retryable ?? isRetryableCode(code);
    if (options.field !== undefined) this.field = options.field;
  }
}

export function invalidOption(field: string, reason: string): MetaguardError {
  return new MetaguardError('MG_ERR_INVALID_OPTION', `${field}: ${reason}`, { field });
}

/** The shape an error takes when it crosses a thread or a wire. */
export interface ErrorInfo {
  code: string;
  message: string;
  /** Whether another attempt may succeed (absent in records written before it existed: read as false). */
  retryable?: boolean;
  /** E_HTTP_* only: the response status, when there was a response. */
  status?: number;
  /** E_HTTP_* only: the first 200 bytes of the response body. */
  body?: string;
}

export function toErrorInfo(err: unknown, fallbackCode = 'E_THROW'): ErrorInfo {
  try {
    return describeError(err, fallbackCode);
  } catch {
    // A thrown value whose message, name or toString throws (a hostile Proxy, a null-prototype object).
    return { code: fallbackCode, message: '[an error that cannot be printed]', retryable: isRetryableCode(fallbackCode) };
  }
}

function describeError(err: unknown, fallbackCode: string): ErrorInfo {
  if (err !== null && typeof err === 'object') {
    const e = err as { code?: unknown; message?: unknown; name?: unknown };
    const message = typeof e.message === 'string' ? e.message : String(err);
    const code = typeof e.code === 'string' && /^(E_|MG_ERR_)/.test(e.code) ? e.code : fallbackCode;
    // Our own errors' messages stand alone; a foreign error's class name (RangeError, …) is kept.
    const named = typeof e.name === 'string' && e.name !== 'Error' && e.name !== 'MetaguardError' && !code.startsWith('E_HTTP_') && code !== 'E_TIMEOUT';
    const info: ErrorInfo = { code, message: named ? `${e.name}: ${message}` : message, retryable: typeof (e as { retryable?: unknown }).retryable === 'boolean' ? (e as { retryable: boolean }).retryable : isRetryableCode(code) };
    if (code.startsWith('E_HTTP_')) {
      const h = err as { status?: unknown; body?: unknown };
      if (typeof h.status === 'number') info.status = h.status;
      if (typeof h.body === 'string') info.body = h.body;
    }
    return info;
  }
  return { code: fallbackCode, message: String(err), retryable: isRetryableCode(fallbackCode) };
}

/**
 * An error as it travels between workers, backends and coordinators: claims that are not batches,
 * dead letters, retries. Decisions (retry, dead-letter, count as a serialization error) read `code`
 * and `retryable`; `message` is for people.
 */
export interface WireError {
  code: string;
  message: string;
  retryable: boolean;
}

/** A wire error with `code`; `retryable` defaults to what the code says. */
export function wireError(code: MetaguardErrorCode | CaseErrorCode, message: string, retryable = isRetryableCode(code)): WireError {
  return { code, message, retryable };
}

/** Any thrown value as a wire error: its own code when it has one of ours, else `fallbackCode`. */
export function toWireError(err: unknown, fallbackCode: MetaguardErrorCode = 'MG_ERR_WORKER'): WireError {
  const info = toErrorInfo(err, fallbackCode);
  return { code: info.code, message: info.message, retryable: info.retryable ?? isRetryableCode(info.code) };
}

export function isMetaguardError(err: unknown): err is MetaguardError {
  return err instanceof MetaguardError;
}
