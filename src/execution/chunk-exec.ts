/**
 * From a job's execution settings (JobExec: what the coordinator decided and, through a queue,
 * shipped) to what a chunk of one role runs with (ChunkExec): header values filled in from this
 * process's environment, and the rate-limit state this process's threads share for that role.
 */
import type { Role } from '../core/protocol.js';
import { createRateLimitState } from '../http/rate-limit.js';
import { resolveHeaders, type JobExec } from '../http/endpoint.js';
import type { ChunkExec } from './protocol.js';

/** Rate-limit states of one process, one per (job, role); the oldest are dropped past `max`. */
export class RateLimitStates {
  readonly #states = new Map<string, SharedArrayBuffer>();
  readonly #max: number;

  constructor(max = 128) {
    this.#max = max;
  }

  get(jobId: string, role: Role): SharedArrayBuffer {
    const key = `${jobId}\n${role}`;
    let state = this.#states.get(key);
    if (!state) {
      state = createRateLimitState();
      this.#states.set(key, state);
      if (this.#states.size > this.#max) this.#states.delete(this.#states.keys().next().value!);
    }
    return state;
  }
}

export interface ChunkExecContext {
  jobId: string;
  env: NodeJS.ProcessEnv;
  /** A worker's list of variables headers may read; undefined: any (the coordinator's own run). */
  allowed?: ReadonlySet<string>;
  rateLimits: RateLimitStates;
}

/**
 * The ChunkExec of `role`, or undefined when the role runs plainly (a module, one case at a time).
 * Throws MG_ERR_HTTP_CONFIG when a header names a variable this process does not provide.
 */
export function chunkExecFor(exec: JobExec | undefined, role: Role, ctx: ChunkExecContext): ChunkExec | undefined {
  if (!exec) return undefined;
  const r = exec.roles[role];
  if (!r.endpoint && r.concurrency <= 1) return undefined;
  const out: ChunkExec = { concurrency: r.concurrency };
  if (r.endpoint) {
    const { headers, secrets } = resolveHeaders(r.endpoint, ctx.env, ctx.allowed);
    out.http = { url: r.endpoint.url, method: r.endpoint.method, headers, secrets, retries: exec.httpRetries };
    if (exec.rateLimit !== undefined) out.rateLimit = { state: ctx.rateLimits.get(ctx.jobId, role), rps: exec.rateLimit };
  }
  return out;
}
