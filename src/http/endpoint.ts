/**
 * HTTP endpoints as implementations: the endpoint description that travels from the coordinator to
 * the case threads (and through a queue to workers), its validation, and `${VAR}` header expansion.
 *
 * A description carries header *templates*: `Authorization: Bearer ${TOKEN}` travels as written, and
 * the process that sends the requests (the coordinator locally, each worker through a queue) fills in
 * the value from its own environment. Secret values never enter a manifest, a report or a log line.
 */
import { createHash } from 'node:crypto';
import { MetaguardError } from '../errors.js';

export const HTTP_METHODS = ['POST', 'PUT', 'PATCH', 'GET', 'DELETE'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

/** What the coordinator knows and ships about an endpoint implementation. */
export interface EndpointSpec {
  url: string;
  /** @defaultValue 'POST' */
  method: HttpMethod;
  /** Header templates; `${NAME}` is replaced from the sending process's environment. */
  headers: Record<string, string>;
}

/** Per-role execution settings of a job: how many cases in flight per thread, and the endpoint if any. */
export interface RoleExec {
  concurrency: number;
  endpoint?: EndpointSpec;
}

/** Execution settings of a job (both roles), shipped in the job manifest through a queue. */
export interface JobExec {
  roles: { baseline: RoleExec; candidate: RoleExec };
  /** Requests per second per role, shared by a process's threads; absent: unlimited. */
  rateLimit?: number;
  /** Retries of a request after a connection error, 429 or 503. */
  httpRetries: number;
}

/** Concurrency when `--concurrency` is not given. */
export const DEFAULT_CONCURRENCY = { module: 1, endpoint: 16 } as const;
export const MAX_CONCURRENCY = 1024;
export const MAX_HTTP_RETRIES = 10;

const VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export const isEndpointUrl = (s: string): boolean => /^https?:\/\//i.test(s);

/** A URL fit for messages and reports: no credentials, no query string (either may hold a secret). */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid url)';
  }
}

/** Identifies an endpoint in a report's `hashes` (never includes header values). */
export function endpointHash(spec: EndpointSpec): string {
  const names = Object.keys(spec.headers).map((h) => h.toLowerCase()).sort();
  return createHash('sha256').update(`${spec.method} ${spec.url}\n${names.join(',')}`).digest('hex');
}

/**
 * Checks an endpoint description: one given by a user's module, or one read back from a queue (where
 * anyone who can write to the broker could have forged it). `where` names it in messages.
 */
export function parseEndpoint(value: unknown, where: string): EndpointSpec {
  const fail = (reason: string) => new MetaguardError('MG_ERR_HTTP_CONFIG', `${where}: ${reason}`);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw fail('must be an object { url, method?, headers? }');
  const v = value as Record<string, unknown>;
  if (typeof v.url !== 'string' || !isEndpointUrl(v.url)) throw fail('url must be an http:// or https:// URL');
  let parsed: URL;
  try {
    parsed = new URL(v.url);
  } catch {
    throw fail('url is not a valid URL');
  }
  if (v.url.length > 4096) throw fail('url is longer than 4096 characters');
  if (parsed.username || parsed.password) throw fail('url must not carry credentials (use a header with ${VAR})');
  const method = v.method === undefined ? 'POST' : String(v.method).toUpperCase();
  if (!(HTTP_METHODS as readonly string[]).includes(method)) throw fail(`method must be one of ${HTTP_METHODS.join(', ')}`);
  const headers: Record<string, string> = {};
  if (v.headers !== undefined) {
    if (v.headers === null || typeof v.headers !== 'object' || Array.isArray(v.headers)) throw fail('headers must be an object of strings');
    const entries = Object.entries(v.headers as Record<string, unknown>);
    if (entries.length > 64) throw fail('more than 64 headers');
    for (const [name, template] of entries) {
      if (!HEADER_NAME.test(name)) throw fail(`header name ${JSON.stringify(name.slice(0, 40))} is not a valid token`);
      if (typeof template !== 'string' || template.length > 8192 || /[\r\n\0]/.test(template)) throw fail(`header ${name} must be a single-line string`);
      headers[name] = template;
    }
  }
  return { url: v.url, method: method as HttpMethod, headers };
}

/** Names of the variables a description's headers reference. */
export function referencedVariables(spec: EndpointSpec): string[] {
  const names = new Set<string>();
  for (const t of Object.values(spec.headers)) for (const m of t.matchAll(VAR)) names.add(m[1]);
  return [...names];
}

export interface ResolvedHeaders {
  headers: Record<string, string>;
  /** Values that came from the environment: the case thread removes them from anything it reports. */
  secrets: string[];
}

/**
 * Fills in `${NAME}` from `env`. `allowed` (a worker's list) limits which names a description may
 * read: a job from the queue must not be able to send any of the worker's variables to a URL of its
 * choosing. Throws MG_ERR_HTTP_CONFIG naming the header and the variable, never its value.
 */
export function resolveHeaders(spec: EndpointSpec, env: NodeJS.ProcessEnv, allowed?: ReadonlySet<string>): ResolvedHeaders {
  const secrets: string[] = [];
  const headers: Record<string, string> = {};
  for (const [name, template] of Object.entries(spec.headers)) {
    headers[name] = template.replace(VAR, (_, variable: string) => {
      if (allowed && !allowed.has(variable)) {
        throw new MetaguardError('MG_ERR_HTTP_CONFIG', `header ${name} references \${${variable}}, which this worker does not provide (list it in METAGUARD_HTTP_SECRETS)`);
      }
      const value = env[variable];
      if (value === undefined || value === '') throw new MetaguardError('MG_ERR_HTTP_CONFIG', `header ${name} references \${${variable}}, which is not set`);
      if (/[\r\n\0]/.test(value)) throw new MetaguardError('MG_ERR_HTTP_CONFIG', `header ${name}: \${${variable}} contains a line break`);
      secrets.push(value);
      return value;
    });
  }
  return { headers, secrets };
}

/** Parses a comma-separated list of variable names (a worker's `--http-secrets`). */
export function parseSecretNames(list: string | undefined): Set<string> {
  return new Set((list ?? '').split(',').map((s) => s.trim()).filter(Boolean));
}

/** Checks execution settings read back from a queue's job manifest. */
export function parseJobExec(value: unknown): JobExec {
  const fail = (reason: string) => new MetaguardError('MG_ERR_HTTP_CONFIG', `job manifest exec: ${reason}`);
  if (value === null || typeof value !== 'object') throw fail('must be an object');
  const v = value as Record<string, unknown>;
  const roles = v.roles as Record<string, unknown> | undefined;
  if (!roles || typeof roles !== 'object') throw fail('roles missing');
  const role = (name: 'baseline' | 'candidate'): RoleExec => {
    const r = roles[name] as Record<string, unknown> | undefined;
    if (!r || typeof r !== 'object') throw fail(`roles.${name} missing`);
    const c = r.concurrency;
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 1 || c > MAX_CONCURRENCY) throw fail(`roles.${name}.concurrency must be an integer 1..${MAX_CONCURRENCY}`);
    return r.endpoint === undefined ? { concurrency: c } : { concurrency: c, endpoint: parseEndpoint(r.endpoint, `job manifest ${name} endpoint`) };
  };
  const retries = v.httpRetries;
  if (typeof retries !== 'number' || !Number.isInteger(retries) || retries < 0 || retries > MAX_HTTP_RETRIES) throw fail(`httpRetries must be an integer 0..${MAX_HTTP_RETRIES}`);
  const out: JobExec = { roles: { baseline: role('baseline'), candidate: role('candidate') }, httpRetries: retries };
  if (v.rateLimit !== undefined) {
    if (typeof v.rateLimit !== 'number' || !Number.isFinite(v.rateLimit) || v.rateLimit <= 0 || v.rateLimit > 1e6) throw fail('rateLimit must be a positive number');
    out.rateLimit = v.rateLimit;
  }
  return out;
}
