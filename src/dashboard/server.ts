/**
 * `metaguard dashboard`'s HTTP server: the page, its bundled assets, the JSON API under `/api/`, and
 * a server-sent event stream of snapshots (`/api/events`). Mutations (cancel an evaluation, retry or
 * purge dead letters) are POSTs checked by the RequestGuard (token, same site, CSRF).
 *
 * GET  /api/snapshot              everything below in one object
 * GET  /api/overview | /api/workers | /api/evaluations | /api/dead | /api/reports
 * GET  /api/events                text/event-stream, one `snapshot` event per refresh
 * GET  /reports/<file>            a report of --report-dir, rendered as HTML
 * POST /api/evaluations/<job>/cancel
 * POST /api/dead/<batch>/retry    POST /api/dead/retry (all)    POST /api/dead/purge {"confirm":"purge"}
 * POST /login                     form sign-in (token → session cookie)
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { invalidOption, MetaguardError, toErrorInfo } from '../errors.js';
import type { Logger } from '../observe/log.js';
import { renderHtml } from '../reports/html.js';
import { can } from '../queue/capabilities.js';
import type { Backend } from '../queue/types.js';
import { loadPageAssets, type PageAssets } from './assets.js';
import { pageHtml, signInHtml } from './html.js';
import { readReport } from './reports.js';
import { CSRF_HEADER, isLoopbackHost, RequestGuard, type Verdict } from './security.js';
import type { DashboardState } from './state.js';
import { version } from '../version.js';

export interface DashboardServerOptions {
  host: string;
  port: number;
  token?: string;
  backend: Backend;
  state: DashboardState;
  reportDir?: string;
  logger: Logger;
}

export interface DashboardServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

const MAX_BODY = 16 * 1024;
/** Live-update streams served at once; more get 503 (the page then polls). */
const MAX_STREAMS = 64;
const MAX_ID = 300;

const securityHeaders = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on form posts (sign-in).
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
};
const pageCsp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const reportCsp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { ...securityHeaders, 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body) + '\n');
}

function sendText(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { ...securityHeaders, 'content-type': type, ...extra });
  res.end(body);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    const onData = (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) return void chunks.push(c);
      // Answer 413 and discard the rest (destroying the socket would leave the client without an answer).
      req.off('data', onData);
      req.resume();
      reject(new HttpError(413, `request body larger than ${MAX_BODY} bytes`));
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function decodeId(raw: string): string {
  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, 'malformed id');
  }
  if (id.length === 0 || id.length > MAX_ID) throw new HttpError(400, `id must be 1..${MAX_ID} characters`);
  return id;
}

export async function startDashboardServer(options: DashboardServerOptions): Promise<DashboardServer> {
  if (!isLoopbackHost(options.host) && options.token === undefined) {
    throw invalidOption('--host', `${options.host} is not a loopback address: binding there requires --auth-token or METAGUARD_DASHBOARD_TOKEN`);
  }
  const assets: PageAssets = await loadPageAssets();
  const guard = new RequestGuard({ bindHost: options.host, ...(options.token !== undefined ? { token: options.token } : {}) });
  const { backend, state, logger } = options;
  const streams = new Set<ServerResponse>();

  const deny = (res: ServerResponse, v: Extract<Verdict, { ok: false }>, wantsHtml: boolean) => {
    if (v.status === 401 && wantsHtml) return sendText(res, 401, 'text/html; charset=utf-8', signInHtml(null), { 'content-security-policy': pageCsp });
    sendJson(res, v.status, { error: v.reason });
  };

  const action = async (req: IncomingMessage, what: string, fn: () => Promise<Record<string, unknown>>) => {
    const result = await fn();
    logger.info('dashboard_action', { action: what, ...result, remote: req.socket.remoteAddress });
    // A failed refresh is logged by the state (backend_error, once per outage); the action stands.
    void state.refresh().catch((err: unknown) => logger.log('debug', 'backend_error', { during: 'dashboard refresh after an action', code: toErrorInfo(err, 'MG_ERR_BACKEND').code, message: (err as Error)?.message }));
    return result;
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    const path = url.pathname;
    const method = req.method ?? 'GET';

    if (path === '/login') {
      if (method !== 'POST') return sendText(res, 405, 'text/plain', 'POST only\n', { allow: 'POST' });
      const site = guard.checkSameSite(req);
      if (!site.ok) return sendJson(res, site.status, { error: site.reason });
      const token = new URLSearchParams(await readBody(req)).get('token') ?? '';
      if (!guard.authRequired) return sendText(res, 303, 'text/plain', '', { location: '/' });
      if (!guard.checkToken(token)) {
        logger.warn('dashboard_action', { action: 'sign-in refused', remote: req.socket.remoteAddress });
        return sendText(res, 401, 'text/html; charset=utf-8', signInHtml('wrong token'), { 'content-security-policy': pageCsp });
      }
      return sendText(res, 303, 'text/plain', '', { location: '/', 'set-cookie': guard.sessionCookie() });
    }

    if (method === 'POST') {
      const v = guard.checkMutation(req);
      if (!v.ok) return deny(res, v, false);
      let m: RegExpExecArray | null;
      if ((m = /^\/api\/evaluations\/([^/]+)\/cancel$/.exec(path))) {
        const jobId = decodeId(m[1]);
        if (!can(backend, 'progress')) throw new HttpError(501, `the ${backend.kind} backend cannot cancel evaluations`);
        const known = await backend.requestCancel(jobId);
        if (!known) throw new HttpError(404, `no running evaluation ${jobId}`);
        // Withdraw here too, so a coordinator that died cannot leave its batches queued.
        const removed = can(backend, 'withdraw') ? await backend.withdrawJob(jobId) : 0;
        return sendJson(res, 200, await action(req, 'cancel evaluation', async () => ({ job: jobId, cancelled: true, batchesRemoved: removed })));
      }
      if ((m = /^\/api\/dead\/([^/]+)\/retry$/.exec(path))) {
        const id = decodeId(m[1]);
        const retried = await backend.retryDead(id);
        if (retried === 0) throw new HttpError(404, `no dead-lettered batch ${id} that can be retried`);
        return sendJson(res, 200, await action(req, 'retry dead letter', async () => ({ batch: id, retried })));
      }
      if (path === '/api/dead/retry') {
        return sendJson(res, 200, await action(req, 'retry all dead letters', async () => ({ retried: await backend.retryDead() })));
      }
      if (path === '/api/dead/purge') {
        const text = await readBody(req);
        let body: unknown;
        try {
          body = JSON.parse(text || '{}');
        } catch {
          throw new HttpError(400, 'body must be JSON {"confirm":"purge"}');
        }
        if ((body as { confirm?: unknown } | null)?.confirm !== 'purge') throw new HttpError(400, 'purging needs the body {"confirm":"purge"}');
        return sendJson(res, 200, await action(req, 'purge dead letters', async () => ({ purged: await backend.purgeDead() })));
      }
      throw new HttpError(404, `no action at ${path}`);
    }

    if (method !== 'GET' && method !== 'HEAD') return sendText(res, 405, 'text/plain', 'GET, HEAD or POST\n', { allow: 'GET, HEAD, POST' });
    // The bundle holds no data (the sign-in page uses its stylesheet): served without authentication.
    if (path === '/assets/app.js') return sendText(res, 200, 'text/javascript; charset=utf-8', assets.js);
    if (path === '/assets/app.css') return sendText(res, 200, 'text/css; charset=utf-8', assets.css);
    const v = guard.checkRead(req);
    if (!v.ok) return deny(res, v, path === '/' || path.startsWith('/reports/'));

    if (path === '/' || path === '/index.html') {
      return sendText(res, 200, 'text/html; charset=utf-8', pageHtml({ csrfToken: guard.csrfToken, csrfHeader: CSRF_HEADER, version }), { 'content-security-policy': pageCsp });
    }
    if (path === '/api/events') {
      if (streams.size >= MAX_STREAMS) throw new HttpError(503, `too many live-update streams (${MAX_STREAMS}); poll /api/snapshot`);
      res.writeHead(200, { ...securityHeaders, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive' });
      res.write('retry: 2000\n\n');
      streams.add(res);
      // No snapshot yet and the backend is down: the stream starts empty (the state logged the fault).
      const snap = await state.current().catch((err: unknown) => {
        logger.log('debug', 'backend_error', { during: 'dashboard live stream', code: toErrorInfo(err, 'MG_ERR_BACKEND').code, message: (err as Error)?.message });
        return undefined;
      });
      if (snap) res.write(`event: snapshot\ndata: ${JSON.stringify(snap)}\n\n`);
      req.on('close', () => streams.delete(res));
      return;
    }
    if (path.startsWith('/api/')) {
      const snap = await state.current();
      const view = path.slice('/api/'.length);
      if (view === 'snapshot') return sendJson(res, 200, snap);
      if (view === 'overview' || view === 'workers' || view === 'evaluations' || view === 'dead') return sendJson(res, 200, snap[view]);
      if (view === 'reports') {
        if (snap.reports === null) throw new HttpError(404, 'no --report-dir given');
        return sendJson(res, 200, snap.reports);
      }
      throw new HttpError(404, `no API at ${path} (try /api/snapshot, /api/overview, /api/workers, /api/evaluations, /api/dead, /api/reports)`);
    }
    if (path.startsWith('/reports/')) {
      if (options.reportDir === undefined) throw new HttpError(404, 'no --report-dir given');
      const report = readReport(options.reportDir, decodeId(path.slice('/reports/'.length)));
      if (!report) throw new HttpError(404, 'no such report');
      let html: string;
      try {
        html = renderHtml(report);
      } catch (err) {
        throw new HttpError(422, `report cannot be rendered: ${(err as Error).message}`);
      }
      return sendText(res, 200, 'text/html; charset=utf-8', html, { 'content-security-policy': reportCsp });
    }
    throw new HttpError(404, `not found: ${path}`);
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.end();
      if (err instanceof HttpError) return sendJson(res, err.status, { error: err.message });
      const code = (err as { code?: string }).code;
      sendJson(res, code === 'MG_ERR_BACKEND' || code === 'MG_ERR_BACKEND_CLOSED' ? 503 : 500, { error: (err as Error).message, ...(code ? { code } : {}) });
    });
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  const onSnapshot = (snap: unknown) => {
    const frame = `event: snapshot\ndata: ${JSON.stringify(snap)}\n\n`;
    for (const res of streams) res.write(frame);
  };
  state.on('snapshot', onSnapshot);

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new MetaguardError('MG_ERR_INVALID_OPTION', `--port: cannot listen on ${options.host}:${options.port} (${err.code ?? err.message})`, { field: '--port' })),
    );
    server.listen(options.port, options.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    port,
    url: `http://${shownHost}:${port}/`,
    close: async () => {
      state.off('snapshot', onSnapshot);
      for (const res of streams) res.end();
      streams.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
    },
  };
}
