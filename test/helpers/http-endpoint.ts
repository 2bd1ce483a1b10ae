/**
 * An implementation served over HTTP for tests: a node:http server on a free port whose behaviour is
 * chosen per path. Every route computes `length` (the test task's answer: the length of the first
 * argument) unless its fault says otherwise. The server records every request it saw, so tests assert
 * on what the client did (attempts, spacing, headers, aborted requests), not only on the report.
 *
 *   /ok?delay=MS            the answer after MS ms (default 0)
 *   /status/CODE            always CODE, with a body that echoes the request's `authorization` header
 *   /malformed              200 with a body that is not JSON
 *   /retry-after/CODE?s=S   CODE (429 or 503) with Retry-After: S on the first attempt of each body, then the answer
 *   /reset                  destroys the connection without answering
 *   /reset-once             destroys the connection on the first attempt of each body, then the answer
 *   /never                  never answers (the request stays open until the client aborts it)
 *   /slow-body              sends headers at once, then one byte of body every 200 ms, forever
 *   /auth?sha=H&delay=MS    the answer (after MS ms) if `authorization: Bearer T` with sha256(T) = H, else 401
 *                           (the URL names the token by its hash: tests check that the token itself travels nowhere)
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface SeenRequest {
  path: string;
  body: string;
  headers: IncomingMessage['headers'];
  /** performance.now() when the request's body had arrived. */
  at: number;
  /** Set when the client closed the connection before an answer was sent. */
  aborted: boolean;
  /** The client's port: requests on one keep-alive connection share it. */
  remotePort: number;
}

export interface TestEndpoint {
  url: string;
  seen: SeenRequest[];
  /** Most requests in flight at once, per route (the path without its query). */
  maxInFlight: Map<string, number>;
  close(): Promise<void>;
}

export async function startEndpoint(): Promise<TestEndpoint> {
  const seen: SeenRequest[] = [];
  const inFlight = new Map<string, number>();
  const maxInFlight = new Map<string, number>();
  const attemptsOf = new Map<string, number>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const answer = (res: ServerResponse, body: string) => {
    let value: unknown = null;
    try {
      const args = JSON.parse(body) as unknown[];
      value = Array.isArray(args[0]) ? args[0].length : null;
    } catch {
      value = null;
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(value));
  };

  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const route = u.pathname;
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      const entry: SeenRequest = { path: u.pathname + u.search, body, headers: req.headers, at: performance.now(), aborted: false, remotePort: req.socket.remotePort ?? 0 };
      seen.push(entry);
      const n = (inFlight.get(route) ?? 0) + 1;
      inFlight.set(route, n);
      maxInFlight.set(route, Math.max(maxInFlight.get(route) ?? 0, n));
      const done = () => inFlight.set(route, (inFlight.get(route) ?? 1) - 1);
      res.on('close', () => {
        if (!res.writableFinished) entry.aborted = true;
        done();
      });
      const key = `${u.pathname}${u.search}\n${body}`;
      const attempt = (attemptsOf.get(key) ?? 0) + 1;
      attemptsOf.set(key, attempt);
      const later = (ms: number, fn: () => void) => {
        const t = setTimeout(() => {
          timers.delete(t);
          fn();
        }, ms);
        timers.add(t);
      };

      if (route === '/ok') later(Number(u.searchParams.get('delay') ?? 0), () => answer(res, body));
      else if (route.startsWith('/status/')) {
        res.statusCode = Number(route.slice('/status/'.length));
        res.end(`failure for ${req.headers.authorization ?? 'anonymous'}: ` + 'x'.repeat(400));
      } else if (route === '/malformed') {
        res.setHeader('content-type', 'application/json');
        res.end('{"length": 3,');
      } else if (route.startsWith('/retry-after/')) {
        if (attempt === 1) {
          res.statusCode = Number(route.slice('/retry-after/'.length));
          res.setHeader('retry-after', u.searchParams.get('s') ?? '1');
          res.end('slow down');
        } else answer(res, body);
      } else if (route === '/reset') req.socket.destroy();
      else if (route === '/reset-once') {
        if (attempt === 1) req.socket.destroy();
        else answer(res, body);
      } else if (route === '/never') {
        // Keep the request open; the client must abort it.
      } else if (route === '/slow-body') {
        res.setHeader('content-type', 'application/json');
        res.write('[');
        const drip = () => {
          if (res.destroyed) return;
          res.write(' ');
          later(200, drip);
        };
        later(200, drip);
      } else if (route === '/auth') {
        const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
        if (createHash('sha256').update(bearer).digest('hex') === u.searchParams.get('sha')) later(Number(u.searchParams.get('delay') ?? 0), () => answer(res, body));
        else {
          res.statusCode = 401;
          res.end('unauthorized');
        }
      } else {
        res.statusCode = 404;
        res.end('no such route');
      }
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    maxInFlight,
    close: async () => {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
