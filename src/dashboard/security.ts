/**
 * The dashboard's request checks, kept pure so they are unit-tested without a server.
 *
 * - Bind: loopback by default; any other address needs a token or the server refuses to start.
 * - Authentication (when a token is set): `Authorization: Bearer <token>` (scripts) or the session
 *   cookie a browser gets from the sign-in form (HttpOnly, SameSite=Strict, an HMAC of the token —
 *   never the token itself).
 * - Mutations are POSTs only, and must not come from another site: the `Origin` (when sent) must name
 *   this server's host (or the X-Forwarded-Host of a reverse proxy in front of it), `Sec-Fetch-Site` (when sent) must be same-origin, and a browser request must
 *   carry the per-process CSRF token the page was served with (a cross-site page cannot read it).
 *   A Bearer token is not ambient (a browser never adds it), so it stands in for the CSRF token.
 * - DNS rebinding: on a loopback bind, the Host header must name a loopback host.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';

export const SESSION_COOKIE = 'mg_dashboard_session';
export const CSRF_HEADER = 'x-metaguard-csrf';

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  return out;
}

export type Verdict = { ok: true } | { ok: false; status: 400 | 401 | 403; reason: string };

export class RequestGuard {
  readonly #token: string | undefined;
  readonly #session: string | undefined;
  readonly #loopback: boolean;
  /** Per-process token embedded in the page; POSTs from the page echo it in `x-metaguard-csrf`. */
  readonly csrfToken = randomBytes(24).toString('base64url');

  constructor(options: { token?: string; bindHost: string }) {
    this.#token = options.token;
    this.#loopback = isLoopbackHost(options.bindHost);
    this.#session = options.token === undefined ? undefined : createHmac('sha256', options.token).update('metaguard dashboard session').digest('base64url');
  }

  get authRequired(): boolean {
    return this.#token !== undefined;
  }

  /** `Set-Cookie` value after a successful sign-in. */
  sessionCookie(): string {
    return `${SESSION_COOKIE}=${this.#session}; HttpOnly; SameSite=Strict; Path=/`;
  }

  checkToken(candidate: string): boolean {
    return this.#token !== undefined && safeEqual(candidate, this.#token);
  }

  #bearer(req: IncomingMessage): boolean {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    return m !== null && this.checkToken(m[1]);
  }

  #cookie(req: IncomingMessage): boolean {
    const value = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
    return value !== undefined && this.#session !== undefined && safeEqual(value, this.#session);
  }

  /** Host header check (DNS rebinding) and authentication, for every request. */
  checkRead(req: IncomingMessage): Verdict {
    if (this.#loopback) {
      const host = (req.headers.host ?? '').replace(/:\d+$/, '');
      if (!isLoopbackHost(host)) return { ok: false, status: 403, reason: `host ${JSON.stringify(req.headers.host ?? '')} is not this dashboard's loopback address` };
    }
    if (this.authRequired && !this.#bearer(req) && !this.#cookie(req)) return { ok: false, status: 401, reason: 'authentication required (Authorization: Bearer <token>, or sign in)' };
    return { ok: true };
  }

  /** Same-site checks that every state-changing request (sign-in included) must pass. */
  checkSameSite(req: IncomingMessage): Verdict {
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none') return { ok: false, status: 403, reason: `cross-site request refused (Sec-Fetch-Site: ${String(site)})` };
    const origin = req.headers.origin;
    if (origin === undefined) return { ok: true };
    let originHost: string | undefined;
    try {
      const u = new URL(origin);
      if (u.protocol === 'http:' || u.protocol === 'https:') originHost = u.host;
    } catch {
      // `null` or garbage: refused below
    }
    // Behind a reverse proxy (TLS, another name) the browser's origin is the proxy's: the proxy says so
    // in X-Forwarded-Host. A cross-site page cannot set that header (it would need a CORS preflight).
    const forwarded = req.headers['x-forwarded-host'];
    const hosts = [req.headers.host, ...(typeof forwarded === 'string' ? forwarded.split(',').map((h) => h.trim()) : [])];
    if (originHost === undefined || !hosts.includes(originHost)) return { ok: false, status: 403, reason: `cross-origin request refused (Origin: ${origin})` };
    return { ok: true };
  }

  /** Everything a mutation needs: read access, same site, and the CSRF token unless a Bearer token authenticated it. */
  checkMutation(req: IncomingMessage): Verdict {
    const read = this.checkRead(req);
    if (!read.ok) return read;
    const site = this.checkSameSite(req);
    if (!site.ok) return site;
    if (this.#bearer(req)) return { ok: true };
    const csrf = req.headers[CSRF_HEADER];
    if (typeof csrf !== 'string' || !safeEqual(csrf, this.csrfToken)) return { ok: false, status: 403, reason: `missing or wrong ${CSRF_HEADER} header` };
    return { ok: true };
  }
}
