/** `metaguard dashboard`: serves the web dashboard of a queue until SIGINT/SIGTERM. */
import { invalidOption } from '../errors.js';
import { dashboardSchema, MIN_TOKEN_LENGTH } from '../options/dashboard.js';
import { startDashboardServer } from '../dashboard/server.js';
import { DashboardState } from '../dashboard/state.js';
import { isLoopbackHost } from '../dashboard/security.js';
import { createLogger } from '../observe/log.js';
import { refuseMemoryQueue, requireQueueConfig, resolveWithConfigFile } from '../options/config-file.js';
import { describeOptions } from '../options/schema.js';
import { validateQueueConfig } from '../options/queue.js';
import { createBackend } from '../queue/index.js';
import { parseFlags } from './args.js';

export const dashboardHelp = `Usage: metaguard dashboard --queue-config JSON [--port 9465] [--host 127.0.0.1] [--report-dir DIR]

Serves a web page (self-contained: no CDN, works offline) with the queue's overview, its workers, the
evaluations running now (with a button to cancel one: its job is withdrawn as if its coordinator got
Ctrl-C), the dead letters (retry one, retry all, purge) and the reports of --report-dir. Every view is
also JSON under /api/ (snapshot, overview, workers, evaluations, dead, reports); /api/events streams
live updates. It binds to 127.0.0.1; any other address requires --auth-token (or
METAGUARD_DASHBOARD_TOKEN), and it refuses to start without one.

Options (flags override METAGUARD_* variables, which override defaults):
${describeOptions(dashboardSchema)}`;

export async function dashboardCommand(argv: string[]): Promise<number> {
  const { flags, positionals, help } = parseFlags(argv, dashboardSchema);
  if (help) {
    process.stdout.write(dashboardHelp + '\n');
    return 0;
  }
  if (positionals.length) throw invalidOption('dashboard', `takes no positional arguments, got ${JSON.stringify(positionals[0])}`);
  const options = resolveWithConfigFile(dashboardSchema, { flags, env: process.env });
  if (options.authToken !== undefined && options.authToken.length < MIN_TOKEN_LENGTH) {
    throw invalidOption(flags.authToken !== undefined ? '--auth-token' : 'METAGUARD_DASHBOARD_TOKEN', `must be at least ${MIN_TOKEN_LENGTH} characters`);
  }
  if (!isLoopbackHost(options.host) && options.authToken === undefined) {
    throw invalidOption('--host', `${options.host} is not a loopback address: binding there requires --auth-token or METAGUARD_DASHBOARD_TOKEN`);
  }
  requireQueueConfig(options);
  const config = validateQueueConfig(options.queueConfig ?? {}, options.backend ? { backend: options.backend } : {});
  refuseMemoryQueue(config.backend, options.backend !== undefined);
  const logger = createLogger({ json: options.logJson, verbose: true });
  const backend = await createBackend(config);
  const state = new DashboardState({ backend, config, logger, refreshS: options.refreshS, ...(options.reportDir !== undefined ? { reportDir: options.reportDir } : {}) });
  let server;
  try {
    await backend.connect();
    await state.refresh();
    server = await startDashboardServer({
      host: options.host,
      port: options.port,
      backend,
      state,
      logger,
      ...(options.authToken !== undefined ? { token: options.authToken } : {}),
      ...(options.reportDir !== undefined ? { reportDir: options.reportDir } : {}),
    });
  } catch (err) {
    await backend.close();
    throw err;
  }
  state.start();
  logger.info('dashboard_started', { url: server.url, backend: config.backend, queue: config.queue, auth: options.authToken !== undefined });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  state.stop();
  await server.close();
  await backend.close();
  return 0;
}
