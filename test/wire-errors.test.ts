/**
 * Errors as data across the wire, and no swallowed failures:
 * - a wire error round-trips through the slot backends store it in; a free-text reason written by an
 *   older version reads as MG_ERR_UNCODED (shown, never matched on);
 * - retryable is decided by code: a malformed batch stops the coordinator at once (it used to be
 *   MG_ERR_BACKEND and retried forever), a backend outage is retried;
 * - a worker dead-letters a non-retryable failure at once, with its code;
 * - a failure thrown outside any handler in a worker's batch becomes coded log lines, not an
 *   unhandled rejection, and the worker goes on;
 * - destroy() during a draining close() returns promptly and hands the batch back.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { isRetryableCode, MetaguardError, toWireError, wireError } from '../src/errors.ts';
import { encodeWireError, parseWireError, storedWireError, withDetail } from '../src/queue/records.ts';
import { MemoryBackend } from '../src/queue/memory/backend.ts';
import { validateQueueConfig } from '../src/options/queue.ts';
import { startWorker } from '../src/daemon/daemon.ts';
import { QueueDispatcher } from '../src/dispatch/queue.ts';
import { resolveEvaluateOptions, runEvaluation } from '../src/evaluate.ts';
import { createLogger, type Logger } from '../src/observe/log.ts';
import { observe } from '../src/observe/events.ts';
import { createCodec } from '../src/codec/index.ts';
import { encodeCases, signBatch } from '../src/queue/messages.ts';
import type { JobSpec } from '../src/dispatch/types.ts';

const fixture = (p: string) => pathToFileURL(join(import.meta.dirname, 'fixtures', p)).href;
const tmp = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

/** A JSON logger whose lines are kept in `lines`. */
function capture(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger({ json: true, stream, level: 'debug' }), lines };
}

async function until(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('wire errors (pure)', () => {
  it('round-trip through the stored slot; free text reads as MG_ERR_UNCODED; a forged code is not taken', () => {
    const e = wireError('MG_ERR_HMAC', 'batch signature does not match');
    assert.deepEqual(parseWireError(encodeWireError(e)), { code: 'MG_ERR_HMAC', message: 'batch signature does not match', retryable: false });
    assert.deepEqual(parseWireError('lease expired after 3 attempts'), { code: 'MG_ERR_UNCODED', message: 'lease expired after 3 attempts', retryable: false });
    assert.equal(parseWireError('{"code":"rm -rf","message":"x","retryable":true}').code, 'MG_ERR_UNCODED', 'a code that is not a code is text');
    assert.equal(parseWireError('{"code":"MG_ERR_CODEC","message":7}').code, 'MG_ERR_UNCODED', 'a message that is not a string is text');
    assert.equal(parseWireError('{"code":"MG_ERR_CODEC","message":"m"}').retryable, false, 'retryable absent: from the code');
    const long = storedWireError(wireError('MG_ERR_CODEC', 'x'.repeat(5000)));
    assert.equal(long.error.message.length, 2000, 'messages are capped, and signers sign what readers read');
    assert.deepEqual(parseWireError(long.reason), long.error);
    assert.deepEqual(withDetail(wireError('MG_ERR_HTTP_CONFIG', 'no TOKEN'), '(gave up after 4 attempts)'), { code: 'MG_ERR_HTTP_CONFIG', message: 'no TOKEN (gave up after 4 attempts)', retryable: true });
  });

  it('retryable comes from the code', () => {
    assert.equal(new MetaguardError('MG_ERR_BACKEND', 'down').retryable, true);
    assert.equal(new MetaguardError('MG_ERR_MALFORMED_BATCH', 'bad role').retryable, false);
    assert.equal(new MetaguardError('MG_ERR_BACKEND_OOM', 'full').retryable, false);
    assert.deepEqual(toWireError(new TypeError('boom')), { code: 'MG_ERR_WORKER', message: 'TypeError: boom', retryable: true });
    assert.deepEqual(toWireError(new MetaguardError('MG_ERR_CODEC', 'short frame')), { code: 'MG_ERR_CODEC', message: 'short frame', retryable: false });
    for (const code of ['E_TIMEOUT', 'E_THROW', 'E_DELIVERY', 'MG_ERR_HMAC', 'MG_ERR_ARTIFACT']) assert.equal(isRetryableCode(code), false, code);
    // Hostile thrown values never make the error path throw in turn.
    const unprintable = { code: 'MG_ERR_WORKER', message: '[an error that cannot be printed]', retryable: true };
    assert.deepEqual(toWireError(Object.create(null)), unprintable);
    assert.deepEqual(toWireError(new Proxy({}, { get: () => { throw new Error('trap'); } })), unprintable);
  });
});

describe('retry decisions branch on codes', () => {
  const failingEnqueue = (backend: MemoryBackend, errors: MetaguardError[], calls: { n: number }) =>
    new Proxy(backend, {
      get(target, prop, receiver) {
        if (prop === 'enqueue') {
          return async (batches: Parameters<MemoryBackend['enqueue']>[0]) => {
            calls.n++;
            const err = errors.shift();
            if (err) throw err;
            return target.enqueue(batches);
          };
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });

  it('a malformed batch stops the coordinator at once with its code; a backend outage is retried', async () => {
    const config = validateQueueConfig({ backend: 'memory', batch_size: 10 });
    const options = resolveEvaluateOptions({ values: { task: 'top_k', n: 10, dispatcher: 'queue', reportDir: tmp('mg-r-') }, env: {} });

    const calls = { n: 0 };
    const malformed = failingEnqueue(new MemoryBackend(config), [new MetaguardError('MG_ERR_MALFORMED_BATCH', 'batch x: unknown role nobody')], calls);
    await assert.rejects(
      runEvaluation(options, { createDispatcher: () => new QueueDispatcher({ config, backend: malformed }) }),
      (err: MetaguardError) => err.code === 'MG_ERR_MALFORMED_BATCH',
    );
    assert.equal(calls.n, 1, 'not retried as a backend outage');

    const backend = new MemoryBackend(config);
    const outage = { n: 0 };
    const flaky = failingEnqueue(backend, [new MetaguardError('MG_ERR_BACKEND', 'connection reset')], outage);
    const worker = await startWorker({ backend, config, threads: 1, pollIntervalS: 0.02, cacheDir: tmp('mg-cache-') });
    try {
      const { report } = await runEvaluation(options, { createDispatcher: () => new QueueDispatcher({ config, backend: flaky }) });
      assert.equal(report.candidate.total, 10);
      assert.ok(outage.n >= 2, 'the outage was retried');
    } finally {
      await worker.close();
    }
  });

  it('a worker dead-letters a non-retryable failure at once, with its code, and the coordinator names it', async () => {
    // A signed batch reaching a worker without hmac_key: MG_ERR_HMAC, the same on every worker.
    const config = validateQueueConfig({ backend: 'memory', max_requeue_attempts: 3 });
    const backend = new MemoryBackend(config);
    const { logger, lines } = capture();
    const worker = await startWorker({ backend, config, threads: 1, pollIntervalS: 0.02, cacheDir: tmp('mg-cache-'), logger });
    try {
      const payload = encodeCases(createCodec({ compress: false }), [{ index: 0, args: [[1, 2, 3], 1] }]);
      const batch = { id: 'signed-1', jobId: 'job-signed', role: 'baseline' as const, priority: 'normal' as const, payload };
      await backend.putJob({ jobId: 'job-signed', task: { sha256: 'a'.repeat(64), ext: '.mjs', name: 't.mjs' }, implementations: { baseline: { sha256: 'b'.repeat(64), ext: '.mjs', name: 'b.mjs' }, candidate: { sha256: 'c'.repeat(64), ext: '.mjs', name: 'c.mjs' } }, seed: 1, timeoutMs: 1000, memMb: 64, createdAt: Date.now() });
      await backend.enqueue([{ ...batch, mac: signBatch('coordinator-key', batch) }]);
      await until('the dead letter', () => lines.some((l) => l.event === 'dead_lettered'));
      const dead = await backend.listDead();
      assert.equal(dead.length, 1);
      assert.deepEqual([dead[0]!.error.code, dead[0]!.error.retryable, dead[0]!.attempts], ['MG_ERR_HMAC', false, 1], 'dead at its first attempt, not retried');
      const line = lines.find((l) => l.event === 'dead_lettered')!;
      assert.deepEqual([line.code, line.retryable], ['MG_ERR_HMAC', false]);
      const { entries } = await backend.readResults('job-signed', '0', 0);
      assert.ok(entries[0]?.kind === 'dead' && entries[0].error.code === 'MG_ERR_HMAC', 'the job is told the code');
    } finally {
      await worker.close();
    }
  });
});

describe('no swallowed failures in the worker', () => {
  it('a failure thrown outside any handler of a batch becomes coded log lines; the worker goes on', async () => {
    const config = validateQueueConfig({ backend: 'memory', batch_size: 5, retry_base_ms: 20, retry_max_ms: 50 });
    // A manifest whose limits throw when first read: after the batch was prepared, outside the
    // preparation's handler (a bug of this kind anywhere in a batch's run).
    let exploded = false;
    class HostileManifest extends MemoryBackend {
      override async getJob(jobId: string) {
        const m = await super.getJob(jobId);
        if (!m) return m;
        return new Proxy(m, {
          get(target, prop, receiver) {
            if (prop === 'timeoutMs' && !exploded) {
              exploded = true;
              throw new Error('hostile manifest exploded');
            }
            return Reflect.get(target, prop, receiver);
          },
        });
      }
    }
    const backend = new HostileManifest(config);
    const { logger: base, lines } = capture();
    // The batch_failed line's own logging throws too: the last resort must still say so with a code.
    let throwOnce = true;
    const logger: Logger = {
      ...base,
      error(event, context) {
        base.error(event, context);
        if (event === 'batch_failed' && throwOnce) {
          throwOnce = false;
          throw new Error('log sink failed');
        }
      },
    };
    const worker = await startWorker({ backend, config, threads: 1, pollIntervalS: 0.02, cacheDir: tmp('mg-cache-'), logger });
    try {
      const options = resolveEvaluateOptions({ values: { task: 'top_k', n: 20, dispatcher: 'queue', reportDir: tmp('mg-r-') }, env: {} });
      const { report } = await runEvaluation(options, { createDispatcher: () => new QueueDispatcher({ config, backend }) });
      assert.equal(report.baseline.total + report.candidate.total, 40, 'every case accounted: the worker went on');
      assert.equal(Object.keys(report.candidate.errors).length, 0, JSON.stringify(report.candidate.errors));
      const failed = lines.find((l) => l.event === 'batch_failed');
      assert.ok(failed, 'batch_failed logged');
      assert.equal(failed.code, 'MG_ERR_WORKER');
      assert.match(String(failed.message), /hostile manifest exploded/);
      const unexpected = lines.find((l) => l.event === 'unexpected_error');
      assert.ok(unexpected, 'the failure of the failure handler is logged, not an unhandled rejection');
      assert.deepEqual([unexpected.code, unexpected.during], ['MG_ERR_WORKER', 'batch failure']);
      assert.match(String(unexpected.message), /log sink failed/);
    } finally {
      await worker.close();
    }
  });

  it('destroy() during a draining close() returns promptly and hands the batch back', async () => {
    const config = validateQueueConfig({ backend: 'memory', batch_size: 1 });
    const backend = new MemoryBackend(config);
    // Each case busy-waits 30 s: close() would wait for it (shutdown deadline 60 s).
    const worker = await startWorker({ backend, config, threads: 1, pollIntervalS: 0.02, cacheDir: tmp('mg-cache-'), shutdownTimeoutS: 60, env: { ...process.env, LONG_MS: '30000' } });
    const dispatcher = new QueueDispatcher({ config, backend, noWorkerTimeoutS: 0 });
    const stop = new AbortController();
    const job: JobSpec = {
      taskUrl: fixture('slow/task.mjs'),
      implUrls: { baseline: fixture('slow/long.mjs'), candidate: fixture('slow/long.mjs') },
      seed: 1,
      timeoutMs: 120_000,
      memMb: 128,
      cases: [[0, 5, 0]],
    };
    const run = dispatcher.run(job, { signal: stop.signal }).catch((err: unknown) => err);
    try {
      await new Promise<void>((resolve) => {
        const stop = observe(worker, { 'metaguard:batch': (m) => m.kind === 'decoded' && (stop(), resolve()) });
      });
      let closed = false;
      const closing = worker.close().then(() => (closed = true));
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(closed, false, 'close() drains: it waits for the running case');
      const started = performance.now();
      await worker.destroy();
      await closing;
      const seconds = (performance.now() - started) / 1000;
      assert.ok(seconds < 10, `destroy() and the running close() returned after ${seconds.toFixed(1)} s, not after the 30 s case`);
      assert.equal(worker.state, 'stopped');
      const stats = await backend.stats();
      assert.equal(stats.inflight, 0, 'nothing left in flight');
      assert.ok(stats.pending.normal >= 1, `the batch was handed back (${JSON.stringify(stats.pending)})`);
    } finally {
      stop.abort(new MetaguardError('MG_ERR_INTERRUPTED', 'test over'));
      const err = (await run) as MetaguardError;
      assert.equal(err.code, 'MG_ERR_INTERRUPTED');
      await dispatcher.destroy();
    }
  });
});
