/**
 * The metrics endpoint: `/metrics` (Prometheus text), `/healthz` (alive, backend connected) and
 * `/readyz` (pool up, consuming). Bound to 127.0.0.1 unless told otherwise.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MetaguardError } from '../errors.js';
import type { Metrics } from './metrics.js';

export interface Probe {
  ok: boolean;
  detail?: Record<string, unknown>;
}

export interface MetricsServerOptions {
  metrics: Metrics;
  host: string;
  port: number;
  health?(): Probe | Promise<Probe>;
  ready?(): Probe | Promise<Probe>;
  /** Called before each scrape (e.g. to refresh queue gauges from the backend). */
  beforeScrape?(): Promise<void>;
  /** A failed `beforeScrape`: the scrape still answers, with the gauges it last had. */
  onScrapeError?(err: unknown): void;
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

export async function serveMetrics(options: MetricsServerOptions): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const probe = async (fn: (() => Probe | Promise<Probe>) | undefined) => {
      const p = fn ? await fn() : { ok: true };
      res.writeHead(p.ok ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: p.ok ? 'ok' : 'unavailable', ...p.detail }) + '\n');
    };
    void (async () => {
      try {
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          res.writeHead(405).end();
        } else if (path === '/metrics') {
          await options.beforeScrape?.().catch((err: unknown) => options.onScrapeError?.(err));
          const body = await options.metrics.text();
          res.writeHead(200, { 'content-type': options.metrics.registry.contentType });
          res.end(body);
        } else if (path === '/healthz') {
          await probe(options.health);
        } else if (path === '/readyz') {
          await probe(options.ready);
        } else {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz or /readyz\n');
        }
      } catch (err) {
        // A probe or a scrape failed: say so; a response already under way is cut instead.
        if (res.headersSent) res.destroy(err as Error);
        else res.writeHead(500, { 'content-type': 'text/plain' }).end(`error: ${(err as Error).message}\n`);
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new MetaguardError('MG_ERR_INVALID_OPTION', `--metrics-port: cannot listen on ${options.host}:${options.port} (${err.code ?? err.message})`, { field: '--metrics-port' })),
    );
    server.listen(options.port, options.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
