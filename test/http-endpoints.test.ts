/**
 * HTTP endpoints as implementations, run locally: URL implementations and modules exporting `http`,
 * `--concurrency` (for endpoints and async modules), `--rate-limit`, retries with Retry-After, the
 * E_HTTP_* result codes with status and body in the violation entry, per-case deadlines that abort
 * requests, latency and request counts in the report and the metrics, and secrets kept out of
 * reports and logs. Every endpoint is a node:http server this file starts (test/helpers/http-endpoint).
 *
 * Run: node --import tsx --test --test-concurrency=1 test/http-endpoints.test.ts
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { spawnSync } from 'node:child_process';
import { createServer as createHttpsServer } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { resolveEvaluateOptions, runEvaluation } from '../src/evaluate.ts';
import { CasePool } from '../src/execution/pool.ts';
import { createRolePools } from '../src/execution/pools.ts';
import { LocalDispatcher } from '../src/dispatch/local.ts';
import { Metrics } from '../src/observe/metrics.ts';
import type { Report } from '../src/reports/types.ts';
import { retryAfterMs } from '../src/http/client.ts';
import { reserveSlot, createRateLimitState } from '../src/http/rate-limit.ts';
import { parseEndpoint, resolveHeaders } from '../src/http/endpoint.ts';
import { startEndpoint, type TestEndpoint } from './helpers/http-endpoint.ts';
import { runCli } from './helpers/run-cli.ts';
import { fixture } from './helpers/queue-harness.ts';
import { until } from './helpers/poll.ts';

const task = fixture('length-task.mjs');
const tmp = mkdtempSync(join(tmpdir(), 'mg-http-'));
let ep: TestEndpoint;
before(async () => {
  ep = await startEndpoint();
});
after(async () => {
  await ep?.close();
  rmSync(tmp, { recursive: true, force: true });
});

let counter = 0;
async function evaluateWith(values: Record<string, unknown>): Promise<Report> {
  const dir = join(tmp, `r${++counter}`);
  const options = resolveEvaluateOptions({ values: { task, n: 20, seed: 3, parallel: 1, timeoutS: 5, reportDir: dir, ...values }, env: {} });
  return (await runEvaluation(options)).report;
}

/** Requests the server saw on a route (path including the query), with an optional marker in the query. */
const seenOn = (prefix: string) => ep.seen.filter((s) => s.path.startsWith(prefix));

/** Writes a module exporting `http` and returns its path. */
function httpModule(name: string, source: string): string {
  const file = join(tmp, name);
  writeFileSync(file, source);
  return file;
}

describe('endpoints as implementations', () => {
  it('POSTs the argument list as a JSON array and takes the 2xx JSON body as the output', async () => {
    const r = await evaluateWith({ baseline: `${ep.url}/ok?t=a`, candidate: `${ep.url}/ok?t=b&delay=5` });
    assert.equal(r.baseline.passes, 20);
    assert.equal(r.candidate.passes, 20);
    const seen = seenOn('/ok?t=a');
    // One call per case and one per relation (the task has one).
    assert.equal(seen.length, 40);
    for (const s of seen) {
      assert.equal(s.headers['content-type'], 'application/json');
      const args = JSON.parse(s.body) as unknown[];
      assert.ok(Array.isArray(args) && args.length === 1 && Array.isArray(args[0]), `body is the argument list: ${s.body}`);
    }
    for (const role of ['baseline', 'candidate'] as const) {
      const h = r[role].http!;
      assert.ok(h, `${role}.http present`);
      assert.equal(h.requests, 40);
      assert.equal(h.retries, 0);
      assert.deepEqual(h.statuses, { '200': 40 });
      assert.ok(h.latency_ms.p50 > 0 && h.latency_ms.p50 <= h.latency_ms.p95 && h.latency_ms.p95 <= h.latency_ms.p99 && h.latency_ms.p99 <= h.latency_ms.max);
    }
    assert.ok(r.candidate.http!.latency_ms.p50 >= 5, 'the candidate route adds 5 ms');
    assert.deepEqual(r.config.concurrency, { baseline: 16, candidate: 16 });
    assert.equal(r.config.http_retries, 3);
    // The report names where each endpoint is, without its query string.
    assert.deepEqual(r.config.endpoints, { baseline: `${ep.url}/ok`, candidate: `${ep.url}/ok` });
    assert.match(r.hashes.baseline, /^[0-9a-f]{64}$/);
  });

  it('runs up to --concurrency cases at once per thread, with the same results as one at a time', async () => {
    ep.maxInFlight.set('/ok', 0);
    const one = await evaluateWith({ baseline: `${ep.url}/ok?delay=30&c=1`, candidate: fixture('first-element.mjs'), concurrency: 1 });
    const route = '/ok';
    const maxOne = ep.maxInFlight.get(route);
    ep.maxInFlight.set(route, 0);
    const eight = await evaluateWith({ baseline: `${ep.url}/ok?delay=30&c=8`, candidate: fixture('first-element.mjs'), concurrency: 8 });
    assert.equal(maxOne, 1, 'one thread, one case at a time');
    const maxEight = ep.maxInFlight.get(route)!;
    assert.ok(maxEight > 1 && maxEight <= 8, `in flight with --concurrency 8: ${maxEight}`);
    // Determinism: completion order differs, results do not.
    for (const role of ['baseline', 'candidate'] as const) {
      assert.equal(eight[role].passes, one[role].passes);
      assert.deepEqual(eight[role].errors, one[role].errors);
    }
    const key = (r: Report) => r.violations.map((v) => `${v.role}:${v.case_index}:${v.kind}:${v.name}`).sort();
    assert.deepEqual(key(eight), key(one));
    assert.deepEqual(eight.statistics.paired, one.statistics.paired);
  });

  it('a non-2xx status is E_HTTP_STATUS with the status and the first 200 bytes of the body, without retries', async () => {
    const r = await evaluateWith({ baseline: `${ep.url}/ok`, candidate: `${ep.url}/status/500` });
    assert.deepEqual(r.candidate.errors, { E_HTTP_STATUS: 20 });
    assert.equal(r.candidate.passes, 0);
    assert.equal(seenOn('/status/500').length, 20, 'one attempt per case: 500 is not retried');
    const v = r.violations.find((x) => x.role === 'candidate' && x.name === 'E_HTTP_STATUS')!;
    assert.equal(v.kind, 'error');
    assert.equal(v.status, 500);
    assert.equal(v.body!.length, 200);
    assert.ok(v.body!.startsWith('failure for anonymous: xxx'));
    assert.deepEqual(r.candidate.http!.statuses, { '500': 20 });
  });

  it('a 2xx body that is not JSON is E_HTTP_BODY with the body', async () => {
    const r = await evaluateWith({ baseline: `${ep.url}/ok`, candidate: `${ep.url}/malformed` });
    assert.deepEqual(r.candidate.errors, { E_HTTP_BODY: 20 });
    const v = r.violations.find((x) => x.name === 'E_HTTP_BODY')!;
    assert.equal(v.status, 200);
    assert.equal(v.body, '{"length": 3,');
  });

  it('429 and 503 are retried after Retry-After; the retries are counted', async () => {
    // One case at a time, so the request after a refused one is its retry (bodies repeat across cases).
    const r = await evaluateWith({ baseline: `${ep.url}/retry-after/429?s=1`, candidate: `${ep.url}/retry-after/503?s=0`, n: 8, concurrency: 1 });
    assert.equal(r.baseline.passes, 8);
    assert.equal(r.candidate.passes, 8);
    for (const [role, prefix, status] of [['baseline', '/retry-after/429', '429'], ['candidate', '/retry-after/503', '503']] as const) {
      const seen = seenOn(prefix);
      const bodies = new Map<string, number[]>();
      for (const s of seen) bodies.set(s.body, [...(bodies.get(s.body) ?? []), s.at]);
      // The first attempt of each distinct body is refused once, then answered.
      assert.equal(r[role].http!.retries, bodies.size, `${role} retries`);
      assert.equal(r[role].http!.statuses[status], bodies.size);
      if (role === 'baseline') {
        for (const [body, at] of bodies) assert.ok(at[1] - at[0] >= 950, `Retry-After: 1 honoured for ${body}: ${at[1] - at[0]} ms`);
      }
    }
  });

  it('a dropped connection is retried up to --http-retries, then E_HTTP_CONNECT', async () => {
    const r = await evaluateWith({ baseline: `${ep.url}/reset-once`, candidate: `${ep.url}/reset`, n: 5, httpRetries: 2 });
    assert.equal(r.baseline.passes, 5, 'a connection reset once is retried');
    assert.ok(r.baseline.http!.retries >= 1);
    assert.deepEqual(r.candidate.errors, { E_HTTP_CONNECT: 5 });
    assert.equal(seenOn('/reset').filter((s) => s.path === '/reset').length, 15, 'first attempt + 2 retries per case');
    assert.equal(r.candidate.http!.retries, 10);
    assert.equal(r.candidate.http!.statuses.error, 15);
  });

  it('a server that never answers, or trickles its body, ends each case with E_TIMEOUT and the request aborted', async () => {
    const r = await evaluateWith({ baseline: `${ep.url}/never`, candidate: `${ep.url}/slow-body`, n: 6, timeoutS: 0.5 });
    assert.deepEqual(r.baseline.errors, { E_TIMEOUT: 6 });
    assert.deepEqual(r.candidate.errors, { E_TIMEOUT: 6 });
    assert.deepEqual(r.baseline.http!.statuses, { timeout: 6 });
    // The client closed every hung request (the server saw its end).
    await until('the server to see every hung request aborted', () => seenOn('/never').every((s) => s.aborted), 5000);
    assert.ok(seenOn('/slow-body').every((s) => s.aborted), 'trickling responses were aborted');
  });

  it('--rate-limit spaces each role\'s requests 1/RPS apart', async () => {
    // Two threads per role (--parallel 4: a pool per role) and small chunks (concurrency 1): both
    // threads send a role's requests, through one shared bucket.
    const r = await evaluateWith({ baseline: `${ep.url}/ok?rl=b`, candidate: `${ep.url}/ok?rl=c`, n: 15, rateLimit: 20, parallel: 4, concurrency: 1 });
    assert.equal(r.config.rate_limit, 20);
    for (const marker of ['b', 'c']) {
      const at = seenOn(`/ok?rl=${marker}`).map((s) => s.at).sort((a, b) => a - b);
      assert.equal(at.length, 30);
      const connections = new Set(seenOn(`/ok?rl=${marker}`).map((s) => s.remotePort));
      assert.ok(connections.size >= 2, 'requests came from both threads (one keep-alive connection each)');
      // 30 requests at 20/s are sent over at least 29 intervals of 50 ms (a lower bound: load only slows
      // it; 300 ms allow for the first request's connection set-up and arrival jitter at the server).
      assert.ok(at[at.length - 1] - at[0] >= 29 * 50 - 300, `span ${at[at.length - 1] - at[0]} ms`);
    }
  });

  it('time spent waiting for the rate limit does not count toward a case\'s limit', async () => {
    // 16 cases in flight, 2 requests each, 5 requests/s: the last case waits ~6 s for its slots, far
    // beyond the 1 s limit, yet no case times out.
    const r = await evaluateWith({ baseline: `${ep.url}/ok?wait=1`, candidate: fixture('good.mjs'), n: 16, rateLimit: 5, timeoutS: 1 });
    assert.equal(r.baseline.passes, 16, JSON.stringify(r.baseline.errors));
    const at = seenOn('/ok?wait=1').map((s) => s.at).sort((a, b) => a - b);
    assert.ok(at[at.length - 1] - at[0] >= 31 * 200 - 300, 'the requests were spaced by the rate limit');
  });

  it('runs async modules with --concurrency and per-case deadlines', async () => {
    const viaFetch = httpModule('fetching.mjs', `export async function solve(xs) { const r = await fetch(${JSON.stringify(`${ep.url}/ok?delay=30&m=1`)}, { method: 'POST', body: JSON.stringify([xs]) }); return r.json(); }\n`);
    ep.maxInFlight.set('/ok', 0);
    const r = await evaluateWith({ baseline: viaFetch, candidate: fixture('never-resolves.mjs'), concurrency: 4, timeoutS: 3, n: 8 });
    assert.equal(r.baseline.passes, 8);
    const max = ep.maxInFlight.get('/ok')!;
    assert.ok(max > 1 && max <= 4, `in flight: ${max}`);
    // never-resolves.mjs hangs on case 3 only (a negative first value): that case times out, alone.
    assert.deepEqual(r.candidate.errors, { E_TIMEOUT: 1 });
    assert.equal(r.candidate.passes, 7);
    assert.equal(r.baseline.http, undefined, 'a module role has no http summary');
  });

  it('a module exporting http shapes requests and responses; ${VAR} headers come from the environment', async () => {
    const token = 'tok-' + Math.random().toString(36).slice(2);
    const mod = httpModule(
      'shaped.mjs',
      `export const http = {
  url: ${JSON.stringify(`${ep.url}/auth?sha=${createHash('sha256').update(token).digest('hex')}`)},
  headers: { authorization: 'Bearer \${MG_TEST_TOKEN}' },
  toRequest: ([xs]) => ({ body: [xs.slice(0)] }),
  fromResponse: (body, res) => (res.status === 200 ? body : -1),
};\n`,
    );
    const dir = join(tmp, 'shaped');
    const options = resolveEvaluateOptions({ values: { task, n: 10, parallel: 1, reportDir: dir, baseline: mod, candidate: mod }, env: {} });
    const { report } = await runEvaluation(options, { env: { MG_TEST_TOKEN: token } });
    assert.equal(report.candidate.passes, 10);
    assert.ok(seenOn('/auth').every((s) => s.headers.authorization === `Bearer ${token}`));
    assert.doesNotMatch(readFileSync(join(dir, readdirSync(dir)[0]), 'utf8'), new RegExp(token));
  });
});

describe('secrets and configuration errors (CLI)', () => {
  it('never writes a header secret into the report, the HTML report, the summary or the logs', async () => {
    const secret = 'sekret-' + Math.random().toString(36).slice(2);
    const mod = httpModule('leaky.mjs', `export const http = { url: ${JSON.stringify(`${ep.url}/status/500`)}, headers: { authorization: 'Bearer \${MG_TEST_SECRET}' } };\n`);
    const cwd = mkdtempSync(join(tmp, 'cli-'));
    const res = await runCli(
      ['evaluate', '--task', task, '--baseline', `${ep.url}/ok`, '--candidate', mod, '--n', '6', '--parallel', '1', '--html-report', 'r.html', '--junit-report', 'r.xml', '--log-json'],
      { cwd, env: { MG_TEST_SECRET: secret } },
    );
    assert.equal(res.code, 1, res.stderr);
    // The server echoed the header into its error body: the violation keeps the body, redacted.
    const reports = join(cwd, 'reports');
    const text = readFileSync(join(reports, readdirSync(reports)[0]), 'utf8');
    const report = JSON.parse(text) as Report;
    const v = report.violations.find((x) => x.name === 'E_HTTP_STATUS')!;
    assert.ok(v.body!.startsWith('failure for Bearer [REDACTED]'), v.body);
    for (const [what, content] of [['report', text], ['html', readFileSync(join(cwd, 'r.html'), 'utf8')], ['junit', readFileSync(join(cwd, 'r.xml'), 'utf8')], ['stdout', res.stdout], ['stderr', res.stderr]]) {
      assert.ok(!content.includes(secret), `${what} contains the secret`);
    }
    const html = readFileSync(join(cwd, 'r.html'), 'utf8');
    assert.match(html, /<th scope="row">latency p99<\/th><td>[\d.]+ ms<\/td><td>[\d.]+ ms<\/td>/);
    assert.match(html, /<th scope="row">http statuses<\/th><td>200: 12<\/td><td>500: 6<\/td>/);
    assert.match(html, /status 500\nbody: failure for Bearer \[REDACTED\]/);
    assert.match(res.stdout, /latency +baseline +p50 [\d.]+ ms +p95 [\d.]+ ms +p99 [\d.]+ ms +\(12 requests, 0 retries\)\n +candidate +p50 [\d.]+ ms +p95 [\d.]+ ms +p99 [\d.]+ ms +\(6 requests, 0 retries\)/);
  });

  it('a header naming an unset variable exits 2 with one line naming the header and the variable', async () => {
    const mod = httpModule('unset.mjs', `export const http = { url: ${JSON.stringify(`${ep.url}/ok`)}, headers: { 'x-api-key': '\${MG_TEST_UNSET_VARIABLE}' } };\n`);
    const res = await runCli(['evaluate', '--task', task, '--baseline', mod, '--candidate', mod, '--n', '4', '--parallel', '1'], { cwd: mkdtempSync(join(tmp, 'cli-')) });
    assert.equal(res.code, 2);
    assert.equal(res.stderr.trim(), 'metaguard: header x-api-key references ${MG_TEST_UNSET_VARIABLE}, which is not set');
  });

  it('rejects a bad endpoint description and bad flags with exit 2', async () => {
    const mod = httpModule('badurl.mjs', `export const http = { url: 'ftp://example.com/x' };\n`);
    const res = await runCli(['evaluate', '--task', task, '--baseline', mod, '--candidate', mod, '--n', '4', '--parallel', '1'], { cwd: mkdtempSync(join(tmp, 'cli-')) });
    assert.equal(res.code, 2);
    assert.match(res.stderr, /badurl\.mjs: http: url must be an http:\/\/ or https:\/\/ URL/);
    const odd = httpModule('bigint.mjs', `export const http = { url: 'http://127.0.0.1:9/', headers: { n: 1n } };\n`);
    const r2 = await runCli(['evaluate', '--task', task, '--baseline', odd, '--candidate', odd, '--n', '4', '--parallel', '1'], { cwd: mkdtempSync(join(tmp, 'cli-')) });
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /bigint\.mjs: http: url, method and headers must be plain data/);
    const flag = await runCli(['evaluate', '--task', task, '--concurrency', '0']);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /--concurrency: must be at least 1/);
    const rate = await runCli(['evaluate', '--task', task, '--rate-limit', '0']);
    assert.equal(rate.code, 2);
    assert.match(rate.stderr, /--rate-limit: must be greater than 0/);
  });
});

const openssl = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;

describe('https endpoints', { skip: openssl ? false : 'openssl is not installed' }, () => {
  it('calls an https:// endpoint whose certificate the process trusts (NODE_EXTRA_CA_CERTS), and fails closed on one it does not', async () => {
    const dir = mkdtempSync(join(tmp, 'tls-'));
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    assert.equal(made.status, 0, 'openssl made a certificate');
    const server = createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify((JSON.parse(body) as unknown[][])[0].length));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(server.address() as { port: number }).port}/length`;
    try {
      const args = ['evaluate', '--task', task, '--baseline', url, '--candidate', url, '--n', '6', '--parallel', '1', '--json'];
      const trusted = await runCli(args, { cwd: mkdtempSync(join(tmp, 'cli-')), env: { NODE_EXTRA_CA_CERTS: cert } });
      const report = JSON.parse(trusted.stdout) as Report;
      assert.equal(report.candidate.passes, 6, trusted.stderr);
      const untrusted = await runCli(args, { cwd: mkdtempSync(join(tmp, 'cli-')) });
      const refused = JSON.parse(untrusted.stdout) as Report;
      assert.deepEqual(refused.candidate.errors, { E_HTTP_CONNECT: 6 });
      assert.equal(refused.candidate.http!.retries, 0, 'an untrusted certificate is not retried');
      assert.match(refused.violations[0].message!, /DEPTH_ZERO_SELF_SIGNED_CERT|self-signed/);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('time limits with --concurrency', () => {
  const cases = Array.from({ length: 12 }, (_, i) => ({ index: i, args: [i % 10 === 3 ? [-1, 2, 3] : [1, 2, 3]] }));
  const run = async (impl: string) => {
    const pool = new CasePool({ threads: 1, timeoutMs: 400 });
    const restarts: string[] = [];
    try {
      const results = await pool.runChunk({ taskUrl: pathToFileURL(task).href, implUrl: pathToFileURL(fixture(impl)).href, seed: 1, cases, exec: { concurrency: 4 } }, { onRestart: (reason) => restarts.push(reason) });
      return { results: new Map(results.map((r) => [r.index, r])), restarts };
    } finally {
      await pool.destroy();
    }
  };

  it('an async case that never settles times out alone, in its thread (no replacement)', async () => {
    const { results, restarts } = await run('never-resolves.mjs');
    assert.equal(results.size, 12);
    for (const [i, r] of results) assert.equal(r.error?.code, i % 10 === 3 ? 'E_TIMEOUT' : undefined, `case ${i}: ${JSON.stringify(r)}`);
    assert.deepEqual(restarts, []);
  });

  it('a busy loop still gets its thread replaced, and only the looping case fails', async () => {
    const { results, restarts } = await run('loop.mjs');
    assert.equal(results.size, 12);
    for (const [i, r] of results) assert.equal(r.error?.code, i % 10 === 3 ? 'E_TIMEOUT' : undefined, `case ${i}: ${JSON.stringify(r)}`);
    assert.deepEqual(restarts, ['timeout']);
  });
});

describe('metrics', () => {
  it('counts requests by role and status, their latency and the retries', async () => {
    const metrics = new Metrics();
    const dispatcher = new LocalDispatcher({ threads: 1, pools: createRolePools(1, { timeoutMs: 5000 }), env: process.env });
    metrics.attachCoordinator(dispatcher);
    const urls = { baseline: `${ep.url}/ok`, candidate: `${ep.url}/retry-after/503?s=0&metrics=1` };
    const endpoint = (url: string) => parseEndpoint({ url }, 'test');
    try {
      await dispatcher.run({
        taskUrl: pathToFileURL(task).href,
        implUrls: urls,
        seed: 11,
        timeoutMs: 5000,
        memMb: 128,
        cases: [[[1, 2, 3]], [[4, 5]], [[6]]],
        exec: { roles: { baseline: { concurrency: 4, endpoint: endpoint(urls.baseline) }, candidate: { concurrency: 4, endpoint: endpoint(urls.candidate) } }, httpRetries: 3 },
      });
    } finally {
      await dispatcher.close();
      metrics.detach();
    }
    const text = await metrics.text();
    // 3 cases x (1 call + 1 relation) = 6 requests answered 200 per role; the candidate's 503s come on top.
    assert.match(text, /metaguard_http_requests_total\{role="baseline",status="200"\} 6/);
    assert.match(text, /metaguard_http_requests_total\{role="candidate",status="200"\} 6/);
    const refused = Number(/metaguard_http_requests_total\{role="candidate",status="503"\} (\d+)/.exec(text)?.[1]);
    assert.ok(refused >= 1 && refused <= 6, `503s: ${refused}`);
    assert.match(text, new RegExp(`metaguard_http_retries_total\\{role="candidate"\\} ${refused}`));
    assert.match(text, /metaguard_http_request_duration_seconds_count\{role="baseline"\} 6/);
  });
});

describe('pieces', () => {
  it('parses Retry-After as seconds or an HTTP date', () => {
    assert.equal(retryAfterMs('3'), 3000);
    assert.equal(retryAfterMs(new Date(10_000).toUTCString(), 4_000), 6_000);
    assert.equal(retryAfterMs('soon'), undefined);
    assert.equal(retryAfterMs(undefined), undefined);
  });

  it('the shared rate limit hands out slots 1/RPS apart', () => {
    const state = createRateLimitState();
    const waits = Array.from({ length: 5 }, () => reserveSlot(state, 10));
    assert.ok(waits[0] < 5);
    for (let i = 1; i < 5; i++) assert.ok(Math.abs(waits[i] - waits[i - 1] - 100) < 5, `slot ${i}: ${waits[i]}`);
  });

  it('validates descriptions read back from a queue and expands only allowed variables', () => {
    assert.throws(() => parseEndpoint({ url: 'http://u:p@host/' }, 'm'), /must not carry credentials/);
    assert.throws(() => parseEndpoint({ url: 'http://h/', headers: { 'bad name': 'x' } }, 'm'), /not a valid token/);
    assert.throws(() => parseEndpoint({ url: 'http://h/', headers: { a: 'x\r\ny: z' } }, 'm'), /single-line/);
    assert.throws(() => parseEndpoint({ url: 'http://h/', method: 'TRACE' }, 'm'), /method must be one of/);
    const spec = parseEndpoint({ url: 'http://h/', headers: { authorization: 'Bearer ${TOKEN}', 'x-other': '${HOME}' } }, 'm');
    assert.throws(() => resolveHeaders(spec, { TOKEN: 't', HOME: '/root' }, new Set(['TOKEN'])), /x-other references \$\{HOME\}, which this worker does not provide/);
    const ok = resolveHeaders(spec, { TOKEN: 'abcd', HOME: '/root' }, new Set(['TOKEN', 'HOME']));
    assert.deepEqual(ok.headers, { authorization: 'Bearer abcd', 'x-other': '/root' });
    assert.deepEqual(ok.secrets, ['abcd', '/root']);
  });
});
