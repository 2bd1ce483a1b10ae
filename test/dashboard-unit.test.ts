/**
 * Pure pieces of the dashboard: request checks, the records read back from a backend, the worker
 * rows shown, the worker's load sampler, and the coordinator's progress publisher on the in-process
 * backend (publish, cancel request, withdrawal).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { RequestGuard, isLoopbackHost, SESSION_COOKIE, CSRF_HEADER } from '../src/dashboard/security.ts';
import { parseBenchRecord, parseProgress } from '../src/queue/admin-records.ts';
import { workerRow } from '../src/dashboard/state.ts';
import { WorkerLoad } from '../src/daemon/load.ts';
import { MemoryBackend } from '../src/queue/memory/backend.ts';
import { validateQueueConfig } from '../src/options/queue.ts';
import { ProgressPublisher } from '../src/dispatch/progress.ts';
import { silentLogger } from '../src/observe/log.ts';
import { REPORT_NAME } from '../src/dashboard/reports.ts';
import { reportFileName } from '../src/reports/write.ts';

const req = (headers: Record<string, string>) => ({ headers, socket: {} }) as unknown as IncomingMessage;
const TOKEN = 'unit-test-token-0123456789';

describe('dashboard request checks', () => {
  it('knows loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.3.4.5', 'localhost', '::1', '[::1]']) assert.equal(isLoopbackHost(h), true, h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.com', '128.0.0.1']) assert.equal(isLoopbackHost(h), false, h);
  });

  it('without a token: loopback Host only; mutations need the page CSRF token and the same site', () => {
    const g = new RequestGuard({ bindHost: '127.0.0.1' });
    assert.equal(g.checkRead(req({ host: '127.0.0.1:9465' })).ok, true);
    assert.equal(g.checkRead(req({ host: 'localhost:9465' })).ok, true);
    assert.deepEqual(g.checkRead(req({ host: 'attacker.example:9465' })), { ok: false, status: 403, reason: 'host "attacker.example:9465" is not this dashboard\'s loopback address' });
    assert.equal(g.checkMutation(req({ host: '127.0.0.1:9465' })).ok, false);
    assert.equal(g.checkMutation(req({ host: '127.0.0.1:9465', [CSRF_HEADER]: 'guess' })).ok, false);
    assert.equal(g.checkMutation(req({ host: '127.0.0.1:9465', [CSRF_HEADER]: g.csrfToken })).ok, true);
    assert.equal(g.checkMutation(req({ host: '127.0.0.1:9465', [CSRF_HEADER]: g.csrfToken, origin: 'http://evil.example' })).ok, false);
    assert.equal(g.checkMutation(req({ host: '127.0.0.1:9465', [CSRF_HEADER]: g.csrfToken, 'sec-fetch-site': 'same-site' })).ok, false);
    assert.equal(g.checkMutation(req({ host: '127.0.0.1:9465', [CSRF_HEADER]: g.csrfToken, origin: 'http://127.0.0.1:9465', 'sec-fetch-site': 'same-origin' })).ok, true);
    assert.equal(g.checkMutation(req({ host: '127.0.0.1:9465', [CSRF_HEADER]: g.csrfToken, origin: 'null' })).ok, false);
    // Behind a TLS proxy that names itself in X-Forwarded-Host.
    assert.equal(g.checkMutation(req({ host: '127.0.0.1:9465', 'x-forwarded-host': 'dash.example', [CSRF_HEADER]: g.csrfToken, origin: 'https://dash.example' })).ok, true);
    assert.equal(g.checkMutation(req({ host: '127.0.0.1:9465', 'x-forwarded-host': 'dash.example', [CSRF_HEADER]: g.csrfToken, origin: 'https://evil.example' })).ok, false);
  });

  it('with a token: Bearer or the session cookie (never the token itself); a cookie alone cannot mutate', () => {
    const g = new RequestGuard({ bindHost: '0.0.0.0', token: TOKEN });
    assert.equal(g.checkRead(req({ host: 'dash.example' })).ok, false);
    assert.equal(g.checkRead(req({ host: 'dash.example', authorization: `Bearer ${TOKEN}` })).ok, true);
    assert.equal(g.checkRead(req({ host: 'dash.example', authorization: `Bearer ${TOKEN}x` })).ok, false);
    const cookie = g.sessionCookie();
    assert.ok(!cookie.includes(TOKEN));
    assert.match(cookie, /HttpOnly; SameSite=Strict/);
    const session = cookie.split(';')[0];
    assert.equal(g.checkRead(req({ host: 'dash.example', cookie: session })).ok, true);
    assert.equal(g.checkRead(req({ host: 'dash.example', cookie: `${SESSION_COOKIE}=forged` })).ok, false);
    assert.equal(g.checkMutation(req({ host: 'dash.example', cookie: session })).ok, false, 'cookie without CSRF token');
    assert.equal(g.checkMutation(req({ host: 'dash.example', cookie: session, [CSRF_HEADER]: g.csrfToken })).ok, true);
    assert.equal(g.checkMutation(req({ host: 'dash.example', authorization: `Bearer ${TOKEN}` })).ok, true);
    assert.equal(g.checkToken(TOKEN), true);
    assert.equal(g.checkToken(''), false);
  });
});

describe('records read back from a backend', () => {
  const good = { jobId: 'j1', task: 't', total: 10, done: { baseline: 3, candidate: 2 }, passed: { baseline: 3, candidate: 1 }, errors: { baseline: 0, candidate: 1 }, priority: 'high', host: 'h', pid: 7, startedAt: 5 };

  it('parses a well-formed progress entry and drops forged ones', () => {
    assert.deepEqual(parseProgress('j1', JSON.stringify(good)), good);
    assert.equal(parseProgress('j2', JSON.stringify(good)), undefined, 'entry filed under another job');
    assert.equal(parseProgress('j1', '{not json'), undefined);
    assert.equal(parseProgress('j1', JSON.stringify({ ...good, done: { baseline: 11, candidate: 0 } })), undefined, 'more done than total');
    assert.equal(parseProgress('j1', JSON.stringify({ ...good, total: -1 })), undefined);
    assert.equal(parseProgress('j1', JSON.stringify({ ...good, priority: 'urgent' })), undefined);
    assert.equal(parseProgress('j1', JSON.stringify({ ...good, task: 'x'.repeat(5000) })), undefined);
  });

  it('parses a bench record', () => {
    const r = { recommendedBatchSize: 25, at: 1, sweep: [{ batch_size: 25, cases_per_sec: 900.5 }] };
    assert.deepEqual(parseBenchRecord(JSON.stringify(r)), r);
    assert.equal(parseBenchRecord(JSON.stringify({ ...r, recommendedBatchSize: 0 })), null);
    assert.equal(parseBenchRecord(JSON.stringify({ ...r, sweep: [{ batch_size: 'x' }] })), null);
  });

  it('a worker row keeps only finite, bounded values and marks a worker that missed two beats', () => {
    const forged = { workerId: 'w'.repeat(1000), host: 'h', pid: -3, threads: Number.NaN, startedAt: 1, lastHeartbeat: 10_000, casesPerSec: Infinity, codec: 'turbo', threadLoad: [{ busy: 7, heapBytes: -1 }] } as never;
    const row = workerRow(forged, 10_500, 1000);
    assert.equal(row.workerId.length, 300);
    assert.equal(row.pid, 0);
    assert.equal(row.threads, 0);
    assert.equal(row.casesPerSec, null);
    assert.equal(row.codec, null);
    assert.deepEqual(row.threadLoad, [{ busy: 1, heapBytes: 0 }]);
    assert.equal(row.stale, false);
    assert.equal(workerRow(forged, 13_500, 1000).stale, true);
  });

  it('report names the dashboard serves are exactly the names evaluate writes', () => {
    assert.match(reportFileName('top_k', new Date('2026-01-02T03:04:05Z'), 'abcdef01'), REPORT_NAME);
    for (const bad of ['../etc/passwd', 'report_x_20260102T030405Z_abcdef01.json/../../x', 'report_x.json']) assert.doesNotMatch(bad, REPORT_NAME);
  });
});

describe('worker load sampler', () => {
  it('reports the busy share per thread and cases/s since the last snapshot, then starts over', async () => {
    const load = new WorkerLoad(2);
    load.snapshot();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 100));
    load.recordCase(50, 0);
    load.recordCase(1000, 1);
    load.recordCase(5, 9); // unknown slot: counted as a case, not as load
    load.recordHeap(1234, 1);
    const windowMs = performance.now() - t0; // at most the sampler's window (a timer may fire a little early)
    const s = load.snapshot();
    assert.ok(s.threadLoad[0].busy > 0.2 && s.threadLoad[0].busy <= 50 / windowMs + 0.001, `thread 0 busy ${s.threadLoad[0].busy} (50 ms over a window of at least ${windowMs.toFixed(1)} ms)`);
    assert.equal(s.threadLoad[1].busy, 1, 'capped at 1');
    assert.equal(s.threadLoad[1].heapBytes, 1234);
    assert.ok(s.casesPerSec > 0);
    assert.equal(load.snapshot().threadLoad[0].busy, 0);
  });
});

describe('coordinator progress on the in-process backend', () => {
  it('publishes, lists, honours a cancellation request and withdraws only that job', async () => {
    const backend = new MemoryBackend(validateQueueConfig({ backend: 'memory' }));
    const job = { jobId: 'job-a', task: 'demo', total: 4, priority: 'normal' as const };
    const p = new ProgressPublisher(backend, silentLogger, job, 0);
    p.record('baseline', { index: 0, passed: true, durationMs: 1 });
    p.record('candidate', { index: 0, passed: false, durationMs: 1, error: { code: 'E_THROW', message: 'x' } });
    assert.equal(await p.tick(), false);
    const [listed] = await backend.listProgress();
    assert.deepEqual([listed.done, listed.passed, listed.errors], [{ baseline: 1, candidate: 1 }, { baseline: 1, candidate: 0 }, { baseline: 0, candidate: 1 }]);
    const payload = new Uint8Array([1]);
    await backend.enqueue([
      { id: 'job-a:baseline:0', jobId: 'job-a', role: 'baseline', priority: 'normal', payload },
      { id: 'job-b:baseline:0', jobId: 'job-b', role: 'baseline', priority: 'normal', payload },
    ]);
    assert.equal(await backend.requestCancel('nope'), false);
    assert.equal(await backend.requestCancel('job-a'), true);
    assert.equal(await p.tick(), true, 'the coordinator learns of the cancellation at its next publication');
    assert.equal(await backend.withdrawJob('job-a'), 1);
    assert.equal((await backend.stats()).pending.normal, 1, "the other job's batch stays");
    await p.remove();
    assert.deepEqual(await backend.listProgress(), []);
    await backend.close();
  });
});

describe('dashboard HTTP server (in-process backend)', () => {
  it('serves the page with its headers, refuses bad paths, methods, ids and unconfirmed purges', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { startDashboardServer } = await import('../src/dashboard/server.ts');
    const { DashboardState } = await import('../src/dashboard/state.ts');
    const dir = mkdtempSync(join(tmpdir(), 'mg-dash-unit-'));
    const name = reportFileName('demo', new Date('2026-01-02T03:04:05Z'), 'abcdef01');
    writeFileSync(join(dir, name), '{"task":"demo","decision":{"adopt":true,"reason":"meets_gate"},"n":3}');
    writeFileSync(join(dir, 'secret.json'), '{"password":"hunter2"}');
    const config = validateQueueConfig({ backend: 'memory' });
    const backend = new MemoryBackend(config);
    const state = new DashboardState({ backend, config, logger: silentLogger, reportDir: dir, refreshS: 60 });
    const server = await startDashboardServer({ host: '127.0.0.1', port: 0, backend, state, logger: silentLogger, reportDir: dir });
    const base = `http://127.0.0.1:${server.port}`;
    try {
      const page = await fetch(`${base}/`);
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
      assert.equal(page.headers.get('x-frame-options'), 'DENY');
      const csrf = /name="metaguard-csrf" content="([^"]+)"/.exec(await page.text())?.[1];
      assert.ok(csrf);
      assert.equal((await fetch(`${base}/assets/app.js`)).status, 200);

      const reports = (await (await fetch(`${base}/api/reports`)).json()) as { file: string; verdict: string }[];
      assert.deepEqual(reports.map((r) => [r.file, r.verdict]), [[name, 'adopt']], 'only report files are listed');
      assert.equal((await fetch(`${base}/reports/secret.json`)).status, 404);
      assert.equal((await fetch(`${base}/reports/..%2F..%2Fetc%2Fpasswd`)).status, 404);
      assert.equal((await fetch(`${base}/api/nothing`)).status, 404);
      assert.equal((await fetch(`${base}/`, { method: 'PUT' })).status, 405);

      const post = (path: string, body = '{}') => fetch(`${base}${path}`, { method: 'POST', headers: { 'x-metaguard-csrf': csrf!, 'content-type': 'application/json' }, body });
      assert.equal((await post('/api/dead/purge')).status, 400, 'purge needs {"confirm":"purge"}');
      assert.equal((await post('/api/dead/purge', '{"confirm":"purge"}')).status, 200);
      assert.equal((await post('/api/evaluations/no-such-job/cancel')).status, 404);
      assert.equal((await post('/api/dead/no-such-batch/retry')).status, 404);
      assert.equal((await post(`/api/dead/${'x'.repeat(400)}/retry`)).status, 400);
      assert.equal((await post('/api/dead/purge', JSON.stringify({ confirm: 'purge', pad: 'x'.repeat(20_000) }))).status, 413);
      assert.equal((await post('/api/nowhere')).status, 404);
    } finally {
      await server.close();
      await backend.close();
    }
  });
});
