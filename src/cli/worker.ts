/** `metaguard worker`: the long-running daemon. Bad configuration exits 78 (EX_CONFIG). */
import { workerSchema } from '../options/worker.js';
import { describeOptions } from '../options/schema.js';
import { refuseMemoryQueue, requireQueueConfig, resolveWithConfigFile } from '../options/config-file.js';
import { validateQueueConfig } from '../options/queue.js';
import { createLogger } from '../observe/log.js';
import { startWorker } from '../daemon/daemon.js';
import { Metrics } from '../observe/metrics.js';
import { serveMetrics, type MetricsServer } from '../observe/server.js';
import { SystemdNotifier } from '../observe/systemd.js';
import { parseFlags } from './args.js';
import { version } from '../version.js';
import { createCodec, nativeLoadError } from '../codec/index.js';

function codecImpl(): string {
  const impl = createCodec().impl;
  const why = nativeLoadError();
  return impl === 'js' && why ? `js (native module not loaded: ${why.message.split('\n')[0]})` : impl;
}
import { parseHideEnv } from '../execution/env.js';
import { invalidOption } from '../errors.js';

export const workerHelp = `Usage: metaguard worker [options]

Runs a worker daemon: claims batches of cases from the queue, runs each case in a thread under time and
memory limits, publishes results. SIGTERM/SIGINT drain (stop claiming, finish or hand back in-flight
batches within --shutdown-timeout-s) and exit 0. Bad configuration exits 78.

Options (flags > METAGUARD_* variables > the --config file > defaults; reference: docs/reference.md):
${describeOptions(workerSchema)}`;

export async function workerCommand(argv: string[]): Promise<number> {
  if (argv.includes('--version') || argv.includes('-v')) {
    // Operators check which Node the unit really runs (ExecStart names the binary).
    process.stdout.write(`metaguard ${version}\nnode ${process.version} (${process.execPath})\ncodec ${codecImpl()}\n`);
    return 0;
  }
  const { flags, help } = parseFlags(argv, workerSchema);
  if (help) {
    process.stdout.write(workerHelp + '\n');
    return 0;
  }
  // The environment is read here, once, and passed down.
  const env = process.env;
  const options = resolveWithConfigFile(workerSchema, { flags, env });
  requireQueueConfig(options);
  const config = validateQueueConfig(options.queueConfig ?? {}, options.backend ? { backend: options.backend } : {});
  refuseMemoryQueue(config.backend, options.backend !== undefined);
  const hidden = parseHideEnv(options.hideEnv);
  if ('error' in hidden) throw invalidOption('METAGUARD_HIDE_ENV', hidden.error);
  const logger = createLogger({ level: options.logLevel, json: options.logJson, file: options.logFile, verbose: true });
  // A signal during start-up drains right after start instead of killing the process mid-connect.
  let early: string | undefined;
  const onEarly = (signal: string) => (early = signal);
  process.once('SIGTERM', onEarly);
  process.once('SIGINT', onEarly);
  const worker = await startWorker({
    config,
    threads: options.threads,
    pollIntervalS: options.pollInterval,
    defaultTimeoutS: options.defaultTimeoutS,
    defaultMemMb: options.defaultMemMb,
    isolation: options.isolation,
    hideEnv: hidden.patterns,
    shutdownTimeoutS: options.shutdownTimeoutS,
    logger,
    env,
    ...(options.workerId ? { workerId: options.workerId } : {}),
    ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}),
    ...(options.httpSecrets ? { httpSecrets: options.httpSecrets } : {}),
  });
  let server: MetricsServer | undefined;
  if (options.metrics) {
    const metrics = new Metrics({ defaultMetrics: true });
    metrics.attachWorker(worker, worker.codecImpl);
    server = await serveMetrics({
      metrics,
      host: options.metricsHost,
      port: options.metricsPort,
      health: () => ({ ok: worker.backendConnected, detail: { worker: worker.workerId, state: worker.state } }),
      ready: () => ({ ok: worker.progressing, detail: { worker: worker.workerId, state: worker.state } }),
      beforeScrape: () => metrics.refreshQueue(worker.backend),
      onScrapeError: (err) => logger.warn('backend_error', { during: 'metrics scrape', code: (err as { code?: string }).code, message: (err as Error).message }),
    }).catch(async (err: unknown) => {
      await worker.destroy();
      throw err;
    });
    logger.info('worker_started', { worker: worker.workerId, metrics: `http://${options.metricsHost}:${server.port}/metrics` });
  }
  const systemd = new SystemdNotifier({ logger, env });
  systemd.ready(worker);
  let exitCode = 0;
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info('worker_draining', { worker: worker.workerId, signal });
      systemd.stopping();
      worker.close().then(resolve, resolve);
    };
    process.off('SIGTERM', onEarly);
    process.off('SIGINT', onEarly);
    if (early) return stop(early);
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    worker.once('stalled', () => {
      // A stuck consume loop: exit non-zero so the supervisor restarts the daemon.
      exitCode = 1;
      systemd.stopping();
      worker.destroy().then(resolve, resolve);
    });
  });
  systemd.stop();
  await server?.close();
  return exitCode;
}
