/**
 * A worker daemon in its own process, for tests that kill one (`kill -9`) mid-run.
 *
 *   node --import tsx test/helpers/kafka-worker-entry.ts
 *
 * Environment: MG_TEST_QUEUE_CONFIG (queue config JSON), MG_TEST_WORKER_ID, MG_TEST_CACHE_DIR,
 * MG_TEST_THREADS (default 1), MG_TEST_LOG_FILE (JSON log of the daemon and the consumer's group
 * events). Prints one JSON line per event on stdout: {"event":"ready"},
 * {"event":"batch","id":…,"cases":…}, {"event":"stopped"}. SIGTERM drains and exits 0.
 */
import { startWorker } from '../../src/daemon/daemon.js';
import { validateQueueConfig } from '../../src/options/queue.js';
import { KafkaBackend } from '../../src/queue/kafka/backend.js';
import { createLogger, silentLogger } from '../../src/observe/log.js';
import { observe } from '../../src/observe/events.js';

const say = (event: string, fields: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ event, pid: process.pid, ...fields }) + '\n');

const config = validateQueueConfig(process.env.MG_TEST_QUEUE_CONFIG ?? '{}');
// The backend is built here rather than by the factory, so this runs whether or not it is wired in.
const logFile = process.env.MG_TEST_LOG_FILE;
const logger = logFile ? createLogger({ file: logFile }, { worker: process.env.MG_TEST_WORKER_ID }) : silentLogger;
const backend = new KafkaBackend(config, { onEvent: (e) => logger.info('backend_reconnected', { kafka: e }) });
const worker = await startWorker({
  config,
  backend,
  logger,
  threads: Number(process.env.MG_TEST_THREADS ?? 1),
  pollIntervalS: 0.05,
  shutdownTimeoutS: 5,
  ...(process.env.MG_TEST_WORKER_ID ? { workerId: process.env.MG_TEST_WORKER_ID } : {}),
  ...(process.env.MG_TEST_CACHE_DIR ? { cacheDir: process.env.MG_TEST_CACHE_DIR } : {}),
});
observe(worker, { 'metaguard:batch': (m) => m.kind === 'completed' && say('batch', { id: m.batch, cases: m.cases }) });
say('ready', { workerId: worker.workerId });

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  (async () => {
    await worker.close();
    await backend.close();
  })().then(
    () => {
      say('stopped');
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`worker close failed: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
