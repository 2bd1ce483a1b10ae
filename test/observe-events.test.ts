/**
 * Observability as a subscriber: what the pools, the worker daemon and the coordinator publish on
 * the diagnostics channels reaches the metrics and the logs of its own source only, and stops when
 * they unsubscribe. (test/metrics.test.ts and test/logs.test.ts check the same end to end.)
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { batchChannel, caseChannel, jobChannel, observe, resultChannel, threadChannel } from '../src/observe/events.ts';
import { createLogger } from '../src/observe/log.ts';
import { logJobEvents, logWorkerEvents } from '../src/observe/log-events.ts';
import { Metrics } from '../src/observe/metrics.ts';
import { SystemdNotifier } from '../src/observe/systemd.ts';

function capture(level: 'debug' | 'info' = 'info') {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { lines, logger: createLogger({ json: true, level, stream }) };
}

/** The value of one sample, `name` with exactly `labels` as prom-client writes them (e.g. '{role="baseline"}'). */
async function value(m: Metrics, name: string, labels = ''): Promise<number | undefined> {
  const line = (await m.text()).split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('diagnostics channels', () => {
  it('a subscriber gets its own source\'s messages only, until it unsubscribes', () => {
    const mine = {};
    const other = {};
    const got: string[] = [];
    const stop = observe(mine, { 'metaguard:batch': (m) => got.push(`${m.kind}:${m.batch}`) });
    assert.ok(batchChannel.hasSubscribers);
    batchChannel.publish({ source: mine, worker: 'w1', batch: 'b1', kind: 'claimed', attempt: 1, priority: 'normal' });
    batchChannel.publish({ source: other, worker: 'w2', batch: 'b2', kind: 'claimed', attempt: 1, priority: 'normal' });
    stop();
    batchChannel.publish({ source: mine, worker: 'w1', batch: 'b3', kind: 'claimed', attempt: 1, priority: 'normal' });
    assert.deepEqual(got, ['claimed:b1']);
    assert.equal(batchChannel.hasSubscribers, false, 'nothing left subscribed: publishers skip building messages');
  });

  it('worker metrics count the cases, restarts and batches of their worker, not another one\'s', async () => {
    const worker = { threads: 2 };
    const neighbour = { threads: 1 };
    const metrics = new Metrics();
    metrics.attachWorker(worker, 'js');
    const timeout = { index: 0, passed: false, durationMs: 300, error: { code: 'E_TIMEOUT', message: 'slow' } };
    for (const source of [worker, neighbour]) {
      caseChannel.publish({ source, role: 'candidate', slot: 1, batch: 'b1', result: timeout });
      caseChannel.publish({ source, role: 'baseline', slot: 0, batch: 'b1', result: { index: 1, passed: true, durationMs: 2 } });
      threadChannel.publish({ source, slot: 1, kind: 'restart', reason: 'timeout' });
      batchChannel.publish({ source, worker: 'w', batch: 'b1', kind: 'decoded', cases: 2 });
      batchChannel.publish({ source, worker: 'w', batch: 'b1', kind: 'completed', cases: 2, seconds: 0.3, frameBytes: 50, rawBytes: 100, frames: 1 });
    }
    metrics.detach();
    caseChannel.publish({ source: worker, role: 'baseline', slot: 0, result: { index: 2, passed: true, durationMs: 1 } });
    assert.equal(await value(metrics, 'metamorphic_cases_total', '{role="candidate",status="error"}'), 1);
    assert.equal(await value(metrics, 'metamorphic_cases_total', '{role="baseline",status="passed"}'), 1, 'nothing counted after detach');
    assert.equal(await value(metrics, 'metamorphic_queue_timeout_failures_total'), 1);
    assert.equal(await value(metrics, 'metaguard_thread_restarts_total', '{thread="1",reason="timeout"}'), 1);
    assert.equal(await value(metrics, 'metamorphic_queue_cases_completed_total'), 2);
    assert.equal(await value(metrics, 'metaguard_compression_ratio'), 0.5);
  });

  it('coordinator metrics count accounted results and the job\'s batches', async () => {
    const dispatcher = {};
    const metrics = new Metrics();
    metrics.attachCoordinator(dispatcher);
    resultChannel.publish({ source: dispatcher, role: 'baseline', result: { index: 0, passed: false, durationMs: 1 } });
    resultChannel.publish({ source: {}, role: 'baseline', result: { index: 0, passed: false, durationMs: 1 } });
    jobChannel.publish({ source: dispatcher, job: 'j', kind: 'started', codec: 'js' });
    jobChannel.publish({ source: dispatcher, job: 'j', kind: 'resent', batches: 2, cases: 14, reason: 'lost' });
    jobChannel.publish({ source: dispatcher, job: 'j', kind: 'forged', batch: 'x', entry: 'results', reason: 'unknown_batch', message: 'never sent', worker: 'w' });
    metrics.detach();
    assert.equal(await value(metrics, 'metamorphic_cases_total', '{role="baseline",status="failed"}'), 1);
    assert.equal(await value(metrics, 'metamorphic_queue_cases_completed_total'), 1);
    assert.equal(await value(metrics, 'metamorphic_queue_batches_requeued_total'), 2);
    assert.equal(await value(metrics, 'metamorphic_queue_cases_requeued_total'), 14);
    assert.equal(await value(metrics, 'metaguard_forged_entries_total', '{reason="unknown_batch"}'), 1);
    assert.equal(await value(metrics, 'metaguard_codec_info', '{impl="js"}'), 1);
  });

  it('worker and coordinator logs write the documented events and fields from the channels', () => {
    const worker = {};
    const dispatcher = {};
    const w = capture('debug');
    const c = capture('debug');
    const stops = [logWorkerEvents(worker, 'w1', w.logger), logJobEvents(dispatcher, c.logger)];
    caseChannel.publish({ source: worker, role: 'candidate', slot: 1, batch: 'b1', result: { index: 4, passed: false, durationMs: 300, error: { code: 'E_TIMEOUT', message: 'case exceeded its 300 ms limit' } } });
    caseChannel.publish({ source: worker, role: 'candidate', slot: 1, batch: 'b1', result: { index: 5, passed: true, durationMs: 1 } });
    batchChannel.publish({ source: worker, worker: 'w1', batch: 'b1', kind: 'retry_later', code: 'MG_ERR_BACKEND', reason: 'prepare failed', attempt: 2, delayMs: 400 });
    batchChannel.publish({ source: worker, worker: 'w1', batch: 'b1', kind: 'completed', cases: 2, seconds: 0.12345, frameBytes: 1, rawBytes: 1, frames: 2 });
    jobChannel.publish({ source: dispatcher, job: 'j', kind: 'forged', batch: 'x', entry: 'dead', reason: 'bad_signature', message: 'not signed', claimedReason: 'poison' });
    jobChannel.publish({ source: dispatcher, job: 'j', kind: 'dispatched', batches: 3, cases: 21 });
    for (const stop of stops) stop();
    const strip = (l: Record<string, unknown>) => {
      const { timestamp, ...rest } = l;
      assert.equal(typeof timestamp, 'string');
      return rest;
    };
    assert.deepEqual(w.lines.map(strip), [
      { level: 'warn', event: 'case_timeout', worker: 'w1', batch: 'b1', case_index: 4, thread: 1, message: 'case exceeded its 300 ms limit' },
      { level: 'warn', event: 'queue_requeued', worker: 'w1', batch: 'b1', attempt: 2, delay_ms: 400, code: 'MG_ERR_BACKEND', reason: 'prepare failed' },
      { level: 'debug', event: 'queue_completed', worker: 'w1', batch: 'b1', cases: 2, seconds: 0.123, frames: 2 },
    ]);
    assert.deepEqual(c.lines.map(strip), [
      { level: 'warn', event: 'forged_entry', job: 'j', batch: 'x', kind: 'dead', reason: 'bad_signature', message: 'not signed', claimed_reason: 'poison' },
      { level: 'debug', event: 'queue_dispatched', job: 'j', batches: 3, cases: 21 },
    ]);
  });
});


describe('distinct log events', () => {
  it('a failed systemd notification is systemd_notify_failed, logged once, never backend_error', () => {
    const { lines, logger } = capture();
    let sent = 0;
    const notifier = new SystemdNotifier({
      env: {},
      logger,
      send: () => {
        sent++;
        throw new Error('socket gone');
      },
    });
    notifier.notify('READY=1\nSTATUS=starting');
    notifier.notify('WATCHDOG=1');
    assert.equal(sent, 2);
    assert.deepEqual(
      lines.map((l) => [l.event, l.level, l.message, l.notification]),
      [['systemd_notify_failed', 'warn', 'socket gone', 'READY=1']],
    );
  });
});
