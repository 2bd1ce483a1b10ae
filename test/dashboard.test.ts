/**
 * `metaguard dashboard` in a real browser: Debian's chromium driven by playwright-core, against a real
 * redis-server, a real worker daemon and real evaluations (all child processes). Any JavaScript error
 * or console error on a page fails the test. Each view is photographed into test-results/dashboard/
 * (or $METAGUARD_TEST_OUTPUT/dashboard).
 */
import { after, before, describe, it } from 'node:test';
import { wireError } from '../src/errors.ts';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import type { BrowserContext, Page } from 'playwright-core';
import { startRedis, redisAvailable, type RedisServer } from './helpers/redis-server.ts';
import { fixture, killAllWorkers, spawnWorker, type WorkerProcess } from './helpers/queue-harness.ts';
import { freePort } from './helpers/net.ts';
import { runCli } from './helpers/run-cli.ts';
import { RedisBackend } from '../src/queue/redis/backend.ts';
import { validateQueueConfig } from '../src/options/queue.ts';
import { until } from './helpers/poll.ts';

const CHROMIUM = '/usr/bin/chromium';

/** The page's document, as the functions passed to page.waitForFunction see it (they run in the browser). */
declare const document: {
  querySelector(selector: string): { textContent: string | null } | null;
  querySelectorAll(selector: string): { length: number };
};
const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const cliEntry = join(root, 'src', 'cli', 'run.ts');
const outDir = join(process.env.METAGUARD_TEST_OUTPUT ?? join(root, 'test-results'), 'dashboard');

async function playwrightAvailable(): Promise<boolean> {
  try {
    await import('playwright-core');
    return true;
  } catch {
    return false;
  }
}
const skip = !redisAvailable() ? 'redis-server is not installed' : !existsSync(CHROMIUM) ? `${CHROMIUM} is not installed (apt-get install chromium)` : !(await playwrightAvailable()) ? 'playwright-core is not installed' : false;

const HMAC_KEY = 'dashboard-test-hmac-secret-d41d8cd98f00';
const TOKEN = 'a-long-dashboard-token-5f2b9c61e8';

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

interface Proc {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

function spawnCli(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', cliEntry, ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((res) =>
    child.once('exit', (code) => {
      children.delete(child);
      res(code);
    }),
  );
  return { child, output: () => out, exited };
}

/** Starts `metaguard dashboard` and resolves with its URL (from its dashboard_started log line). */
async function startDashboard(args: string[], env: Record<string, string> = {}): Promise<Proc & { url: string }> {
  const p = spawnCli(['dashboard', '--log-json', '--refresh-s', '0.5', ...args], env);
  let url: string | undefined;
  await until(
    'the dashboard to start',
    () => {
      const line = p.output().split('\n').find((l) => l.includes('"dashboard_started"'));
      if (line) url = (JSON.parse(line) as { url: string }).url;
      if (p.child.exitCode !== null) throw new Error(`dashboard exited ${p.child.exitCode}: ${p.output()}`);
      return url !== undefined;
    },
    60_000,
  );
  return { ...p, url: url! };
}

function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = request(url, { headers }, (r) => {
      let body = '';
      r.setEncoding('utf8').on('data', (d: string) => (body += d));
      r.on('end', () => res({ status: r.statusCode ?? 0, body }));
    });
    req.on('error', rej);
    req.end();
  });
}

const oksOf = (claims: Awaited<ReturnType<RedisBackend['claimBatches']>>) => claims.map((c) => (c.ok ? c.batch.id : c.id));

/** A browser page whose JavaScript errors and console errors are collected (and fail the test). */
async function openPage(context: BrowserContext, errors: string[]): Promise<Page> {
  const page = await context.newPage();
  await page.setViewportSize({ width: 1360, height: 860 });
  page.on('pageerror', (err) => errors.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console error: ${msg.text()}`);
  });
  return page;
}

async function doneCount(page: Page): Promise<number> {
  const text = (await page.locator('tr[data-job] [data-field="done"]').first().textContent()) ?? '';
  return Number(/(\d+)\s*\//.exec(text)?.[1] ?? NaN);
}

describe('metaguard dashboard in a browser', { skip, concurrency: false }, () => {
  let redis: RedisServer;
  let worker: WorkerProcess;
  let dashboard: Proc & { url: string };
  let context: BrowserContext;
  let admin: RedisBackend;
  let queueConfig: Record<string, unknown>;
  const reportDir = mkdtempSync(join(tmpdir(), 'mg-dash-reports-'));

  before(async () => {
    mkdirSync(outDir, { recursive: true });
    redis = await startRedis();
    queueConfig = {
      backend: 'redis',
      connection: { host: '127.0.0.1', port: redis.port },
      queue: `dash_${randomUUID().slice(0, 8)}`,
      hmac_key: HMAC_KEY,
      lease_seconds: 10,
      heartbeat_check_interval: 0.5,
      heartbeat_timeout: 30,
      batch_size: 5,
    };
    admin = new RedisBackend(validateQueueConfig(queueConfig));
    await admin.connect();
    worker = spawnWorker(queueConfig, { args: ['--threads', '1'] });
    dashboard = await startDashboard(['--queue-config', JSON.stringify(queueConfig), '--port', String(await freePort()), '--report-dir', reportDir]);
    const { chromium } = await import('playwright-core');
    context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'mg-chromium-')), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    await context?.close().catch(() => {});
    for (const c of children) c.kill('SIGKILL');
    killAllWorkers();
    await admin?.close();
    await redis?.stop();
  });

  const evaluate = (n: number) =>
    spawnCli([
      'evaluate',
      '--task', fixture('slow/task.mjs'),
      '--baseline', fixture('slow/baseline.mjs'),
      '--candidate', fixture('slow/candidate.mjs'),
      '--n', String(n),
      '--timeout-s', '10',
      '--dispatcher', 'queue',
      '--queue-config', JSON.stringify(queueConfig),
      '--report-dir', reportDir,
    ]);

  it('shows the worker row and an evaluation whose progress moves, cancels it from the page, and lists its reports', async () => {
    const errors: string[] = [];
    const page = await openPage(context, errors);
    await page.goto(dashboard.url + '#workers');
    const row = page.locator('tr[data-worker]');
    await row.first().waitFor({ timeout: 60_000 });
    const rowText = (await row.first().textContent()) ?? '';
    assert.match(rowText, /native|js/, 'codec shown');
    assert.match(rowText, /\d+\.\d+\.\d+/, 'version shown');
    assert.match(rowText, /running/);

    // A finished evaluation first, so that the Reports view has one to list and open.
    const short = evaluate(40);
    assert.equal(await short.exited, 0, short.output());
    // Its cases show up in the worker's row (cases done) without reloading the page.
    await page.waitForFunction(() => Number(document.querySelector('tr[data-worker] [data-field="cases"]')?.textContent ?? 0) >= 80, null, { timeout: 30_000 });
    await page.screenshot({ path: join(outDir, 'workers.png'), fullPage: true });

    // `bench` against this queue leaves its recommendation where the overview shows it.
    const bench = await runCli(['bench', '--skip-codec', '--sizes', '5,10', '--n', '100', '--queue-config', JSON.stringify(queueConfig), '--json'], { timeoutMs: 180_000 });
    assert.equal(bench.code, 0, bench.stderr);
    const recommended = (JSON.parse(bench.stdout) as { recommended_batch_size: number }).recommended_batch_size;

    const running = evaluate(3000);
    await page.click('nav a[data-view="evaluations"]');
    await page.locator('tr[data-job]').first().waitFor({ timeout: 60_000 });
    const first = await doneCount(page);
    await page.waitForFunction(
      (least) => Number(/(\d+)\s*\//.exec(document.querySelector('tr[data-job] [data-field="done"]')?.textContent ?? '')?.[1] ?? 0) >= least,
      first + 20,
      { timeout: 60_000 },
    );
    assert.ok((await doneCount(page)) > first, 'progress moves without reloading');
    assert.match((await page.locator('tr[data-job]').first().textContent()) ?? '', /slow/);
    await page.screenshot({ path: join(outDir, 'evaluations.png'), fullPage: true });

    await page.click('nav a[data-view="overview"]');
    await page.waitForFunction(() => Number(document.querySelector('[data-stat="cases-per-sec"] .value')?.textContent ?? 0) > 0, null, { timeout: 30_000 });
    await page.waitForFunction((size) => document.querySelector('[data-stat="batch-size"] .value')?.textContent === String(size), recommended, { timeout: 30_000 });
    assert.equal(await page.locator('#view-overview canvas').count() > 0, true, 'the throughput chart is drawn');
    await page.screenshot({ path: join(outDir, 'overview.png'), fullPage: true });

    await page.click('nav a[data-view="reports"]');
    const report = page.locator('tr[data-report] a');
    await report.first().waitFor({ timeout: 30_000 });
    assert.match((await page.locator('tr[data-report]').first().textContent()) ?? '', /adopt|reject/);
    await page.screenshot({ path: join(outDir, 'reports.png'), fullPage: true });
    const [opened] = await Promise.all([context.waitForEvent('page'), report.first().click()]);
    await opened.waitForLoadState();
    assert.match(await opened.title(), /metaguard (ADOPT|REJECT)/);
    await opened.close();

    // Cancel: the confirmation dialog, then the coordinator stops and its queued batches are withdrawn.
    await page.click('nav a[data-view="evaluations"]');
    await page.locator('tr[data-job] button.cancel').click();
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await page.click('#confirm-yes');
    const code = await running.exited;
    assert.equal(code, 2, running.output());
    assert.match(running.output(), /cancelled from the dashboard/);
    await page.locator('tr[data-job]').waitFor({ state: 'detached', timeout: 30_000 });
    const stats = await admin.stats();
    assert.equal(stats.pending.normal, 0, 'withdrawn: no batch of the cancelled job is left pending');

    // Nothing secret of the queue config reaches the page or the API.
    assert.ok(!(await page.content()).includes(HMAC_KEY));
    const api = await rawGet(new URL('/api/snapshot', dashboard.url).href, {});
    assert.equal(api.status, 200);
    assert.ok(!api.body.includes(HMAC_KEY));
    assert.ok(!api.body.includes('connection') && !api.body.includes('hmac'), 'connection details are not shown');
    assert.deepEqual(errors, []);
  });

  it('dead-letters a batch, retries it from the page (it leaves the table and runs), purges the rest after confirming', async () => {
    const errors: string[] = [];
    const page = await openPage(context, errors);
    await page.goto(dashboard.url + '#dead');
    await page.locator('#view-dead .empty').waitFor({ timeout: 30_000 });

    // Stop the worker so the batches wait (a SIGSTOP longer than its watchdog would look like a stall);
    // the test takes batches as a worker would and dead-letters them.
    worker.child.kill('SIGTERM');
    await worker.exited;
    let run: Proc | undefined;
    let retried = '';
    // Waits for the page to show `n` dead-letter rows; on failure says what the page and the store hold.
    const deadRows = async (n: number) => {
      try {
        await page.waitForFunction((k) => document.querySelectorAll('tr[data-batch]').length === k, n, { timeout: 30_000 });
      } catch (err) {
        const shown = await page.locator('tr[data-batch]').count();
        const dead = (await admin.listDead()).map((d) => d.id);
        const overview = (await rawGet(new URL('/api/overview', dashboard.url).href, {})).body.slice(0, 600);
        throw new Error(`waiting for ${n} dead-letter rows: the page shows ${shown}, the store holds ${dead.length} (${dead.join(', ')}); coordinator exit ${run?.child.exitCode ?? 'none yet'}, its output: ${run?.output().slice(-1500) ?? ''}; /api/overview ${overview}; ${(err as Error).message}`);
      }
    };
    try {
      run = evaluate(100);
      await until('batches pending', async () => (await admin.stats()).pending.normal >= 3, 60_000);
      const claims = await admin.claimBatches('dashboard-test', 3, 120_000);
      const ids = claims.map((c) => (c.ok ? c.batch.id : c.id));
      assert.equal(ids.length, 3);
      for (const id of ids) await admin.deadLetter('dashboard-test', id, wireError('MG_ERR_MALFORMED_BATCH', 'test: poisoned on purpose'));

      await deadRows(3);
      assert.match((await page.locator('#view-dead tbody').textContent()) ?? '', /poisoned on purpose/);
      await page.screenshot({ path: join(outDir, 'dead-letters.png'), fullPage: true });
      const overview = JSON.parse((await rawGet(new URL('/api/overview', dashboard.url).href, {})).body) as { dead: number; deadByPriority: Record<string, number> };
      assert.equal(overview.dead, 3);
      assert.equal(overview.deadByPriority.normal, 3);

      retried = ids[0];
      await page.locator(`tr[data-batch="${retried}"] button.retry`).click();
      await page.locator(`tr[data-batch="${retried}"]`).waitFor({ state: 'detached', timeout: 30_000 });
      assert.equal(await page.locator('tr[data-batch]').count(), 2);
      assert.ok(!(await admin.listDead()).some((d) => d.id === retried), 'retried batch left the dead-letter store');

      // Purge asks first: "Keep" keeps them.
      await page.click('#purge');
      await page.locator('#confirm').waitFor({ state: 'visible' });
      await page.click('#confirm-no');
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(await page.locator('tr[data-batch]').count(), 2);
      assert.equal((await admin.listDead()).length, 2);
      await page.click('#purge');
      await page.click('#confirm-yes');
      await page.locator('#view-dead .empty').waitFor({ timeout: 30_000 });
      assert.equal((await admin.listDead()).length, 0);

      // Retry all: two more dead letters, one click, both back in the queue.
      // Two batches as they become claimable (not every one need be pending at the moment of one claim): a single claim
      // could take one and leave the page waiting for a second row that never comes.
      const more: string[] = [];
      await until('two more batches to claim', async () => {
        more.push(...oksOf(await admin.claimBatches('dashboard-test', 2 - more.length, 120_000)));
        return more.length >= 2;
      }, 60_000);
      for (const id of more) await admin.deadLetter('dashboard-test', id, wireError('MG_ERR_MALFORMED_BATCH', 'test: poisoned again'));
      await deadRows(2);
      await page.click('#retry-all');
      await page.locator('#view-dead .empty').waitFor({ timeout: 30_000 });
      assert.equal((await admin.listDead()).length, 0);
    } finally {
      worker = spawnWorker(queueConfig, { args: ['--threads', '1'] });
    }
    // The retried batch runs on the worker like any other: its batch record goes once completed.
    const redisClient = new (await import('ioredis')).Redis({ port: redis.port, lazyConnect: true });
    await redisClient.connect();
    try {
      await until('the retried batch to complete', async () => (await redisClient.exists(admin.key(`batch:${retried}`))) === 0, 60_000);
      await run!.exited;
    } finally {
      redisClient.disconnect();
    }
    assert.equal((await admin.stats()).dead, 0, 'the retried batch was not dead-lettered again');
    assert.deepEqual(errors, []);
  });

  it('a sharded queue (shards: 3) keeps progress and cancel requests on its first shard and withdraws a job from every shard', async () => {
    const { ShardedBackend } = await import('../src/queue/redis/sharded.ts');
    const sharded = new ShardedBackend(validateQueueConfig({ ...queueConfig, queue: `dash_sh_${randomUUID().slice(0, 8)}`, shards: 3 }));
    await sharded.connect();
    try {
      const job = `job-${randomUUID()}`;
      const other = `job-${randomUUID()}`;
      const batch = (jobId: string, i: number) => ({ id: `${jobId}:baseline:${i}`, jobId, role: 'baseline' as const, priority: 'normal' as const, payload: new Uint8Array([i]) });
      await sharded.enqueue([...Array.from({ length: 6 }, (_, i) => batch(job, i)), ...Array.from({ length: 3 }, (_, i) => batch(other, i))]);
      const perShard = await Promise.all(sharded.shards.map(async (s) => (await s.stats()).pending.normal));
      assert.deepEqual(perShard, [3, 3, 3], 'batches round-robin over the shards');
      const progress = { jobId: job, task: 't', total: 6, done: { baseline: 0, candidate: 0 }, passed: { baseline: 0, candidate: 0 }, errors: { baseline: 0, candidate: 0 }, priority: 'normal' as const, host: 'h', pid: 1, startedAt: Date.now() };
      assert.deepEqual(await sharded.publishProgress(progress), { cancelRequested: false });
      assert.equal(await sharded.requestCancel(job), true);
      assert.equal((await sharded.listProgress())[0]?.cancelRequested, true);
      assert.equal(await sharded.withdrawJob(job), 6);
      assert.equal((await sharded.stats()).pending.normal, 3);
      const [claimed] = (await sharded.claimBatches('w', 1, 60_000)).filter((c) => c.ok);
      assert.ok(claimed);
      assert.equal((await sharded.priorityCounts()).inflight.normal, 1);
    } finally {
      await sharded.close();
    }
  });

  it('refuses a non-loopback bind without a token; with one, reads need it and cross-site mutations are refused', async () => {
    const qc = JSON.stringify(queueConfig);
    const refused = await runCli(['dashboard', '--host', '0.0.0.0', '--port', String(await freePort()), '--queue-config', qc]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /--host: 0\.0\.0\.0 is not a loopback address: binding there requires --auth-token or METAGUARD_DASHBOARD_TOKEN/);
    const short = await runCli(['dashboard', '--host', '0.0.0.0', '--queue-config', qc], { env: { METAGUARD_DASHBOARD_TOKEN: 'short' } });
    assert.equal(short.code, 2);
    assert.match(short.stderr, /METAGUARD_DASHBOARD_TOKEN: must be at least 16 characters/);

    const port = await freePort();
    const secured = await startDashboard(['--host', '0.0.0.0', '--port', String(port), '--queue-config', qc], { METAGUARD_DASHBOARD_TOKEN: TOKEN });
    try {
      const base = `http://127.0.0.1:${port}`;
      assert.equal((await fetch(`${base}/api/overview`)).status, 401);
      assert.equal((await fetch(`${base}/api/overview`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status, 401);
      const ok = await fetch(`${base}/api/overview`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(ok.status, 200);
      const body = await ok.text();
      assert.ok(!body.includes(HMAC_KEY) && !body.includes(TOKEN));
      // Mutations: POST only, never from another site, the token required.
      assert.equal((await fetch(`${base}/api/dead/retry`, { method: 'POST' })).status, 401);
      assert.equal((await fetch(`${base}/api/dead/retry`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, origin: 'http://evil.example' } })).status, 403);
      assert.equal((await fetch(`${base}/api/dead/retry`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'sec-fetch-site': 'cross-site' } })).status, 403);
      const retry = await fetch(`${base}/api/dead/retry`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(retry.status, 200);
      assert.equal(typeof ((await retry.json()) as { retried: unknown }).retried, 'number');
      assert.equal((await fetch(`${base}/api/dead/purge`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })).status, 400, 'purge needs its confirmation');

      // In the browser: a sign-in form, a wrong token refused, the right one opens the dashboard.
      const errors: string[] = [];
      const page = await openPage(context, errors);
      await page.goto(base + '/');
      await page.locator('input[name="token"]').waitFor();
      await page.screenshot({ path: join(outDir, 'sign-in.png'), fullPage: true });
      await page.fill('input[name="token"]', 'not-the-token-not-the-token');
      await page.click('button[type="submit"]');
      await page.locator('.error').waitFor();
      errors.length = 0; // the refused sign-in's 401 is logged by the browser as a failed resource load
      await page.fill('input[name="token"]', TOKEN);
      await page.click('button[type="submit"]');
      await page.locator('tr[data-worker]').first().waitFor({ state: 'attached', timeout: 30_000 });
      await page.click('nav a[data-view="workers"]');
      await page.locator('tr[data-worker]').first().waitFor({ timeout: 30_000 });
      assert.deepEqual(errors, []);
    } finally {
      secured.child.kill('SIGTERM');
      assert.equal(await secured.exited, 0);
    }

    // The loopback dashboard answers only to loopback host names (DNS rebinding).
    const rebound = await rawGet(new URL('/api/overview', dashboard.url).href, { host: `evil.example:${new URL(dashboard.url).port}` });
    assert.equal(rebound.status, 403);
  });
});
