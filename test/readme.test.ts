/**
 * The README's examples run as written. Files shown with a `// name` or `# name` first line are
 * written to a temporary folder; every `npx metaguard …` line of the sections that need no server
 * runs there and must succeed. The operator's guide runs against a real redis-server on a free port
 * (its address 10.0.0.5:6380 and the metrics port are the only substitutions). The Kafka lines, which
 * need a cluster, are parsed: their flags and queue config must be valid; so are the RabbitMQ and SQS lines.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli, type CliResult } from './helpers/run-cli.ts';
import { startRedis, type RedisServer } from './helpers/redis-server.ts';
import { freePort } from './helpers/net.ts';
import { parseFlags } from '../src/cli/args.ts';
import { evaluateSchema } from '../src/options/evaluate.ts';
import { workerSchema } from '../src/options/worker.ts';
import { queueSchema } from '../src/options/queue-command.ts';
import { validateQueueConfig } from '../src/options/queue.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const show = (r: CliResult) => `exit ${r.code}\nstdout: ${r.stdout.slice(-1500)}\nstderr: ${r.stderr.slice(-1500)}`;

interface Block {
  section: string;
  lang: string;
  body: string;
}

function blocks(): Block[] {
  const out: Block[] = [];
  let section = '';
  const lines = readme.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^##+ /.test(line)) section = line.replace(/^#+ /, '');
    const fence = /^(\s*)```(\w+)/.exec(line);
    if (!fence) continue;
    const indent = fence[1]!.length;
    const body: string[] = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]!); i++) body.push(lines[i]!.slice(indent));
    out.push({ section, lang: fence[2]!, body: body.join('\n') + '\n' });
  }
  return out;
}

/** Shell lines of a block: continuations joined, comments dropped. */
function commands(body: string): string[] {
  return body
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l && !l.startsWith('#'));
}

/** Splits a command line like sh: single quotes literal, double quotes expand $VAR. */
function words(line: string, env: Record<string, string>): string[] {
  const out: string[] = [];
  const re = /'([^']*)'|"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let m;
  let cur: string | undefined;
  let lastEnd = -1;
  while ((m = re.exec(line))) {
    const piece = m[1] ?? (m[2] !== undefined ? m[2].replace(/\$(\w+)/g, (_, v: string) => env[v] ?? '') : m[3]!.replace(/\$(\w+)/g, (_, v: string) => env[v] ?? ''));
    if (cur !== undefined && m.index === lastEnd) cur += piece;
    else {
      if (cur !== undefined) out.push(cur);
      cur = piece;
    }
    lastEnd = re.lastIndex;
  }
  if (cur !== undefined) out.push(cur);
  return out;
}

const all = blocks();
const local = ['Install', 'Quick start', 'Evaluate your own implementations', 'Configuration files'];

describe('README examples', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-readme-'));

  before(() => {
    for (const b of all) {
      const named = /^(?:\/\/|#) ([\w.-]+\.(?:ts|mjs|js|toml))\b/.exec(b.body);
      if (named) writeFileSync(join(dir, named[1]!), b.body);
    }
  });

  it('shows the task, both implementations and the config file it then runs', () => {
    for (const f of ['sort.task.ts', 'old.ts', 'new.ts', 'distributed.toml']) {
      assert.ok(all.some((b) => b.body.startsWith(`// ${f}`) || b.body.startsWith(`# ${f}`)), `README shows ${f}`);
    }
  });

  it('every npx metaguard line of the sections that need no server succeeds as written', async () => {
    let ran = 0;
    for (const b of all.filter((x) => x.lang === 'sh' && local.includes(x.section))) {
      for (const line of commands(b.body)) {
        if (line === 'npm ci') continue; // what CI itself runs on a fresh clone before the tests
        assert.match(line, /^npx metaguard /, `a command the test knows how to run: ${line}`);
        const r = await runCli(words(line, {}).slice(2), { cwd: dir, timeoutMs: 180_000 });
        assert.equal(r.code, 0, `${line}\n${show(r)}`);
        ran++;
      }
    }
    assert.ok(ran >= 5, `ran ${ran} README commands`);
  });

  describe('the operator\'s guide, against redis-server', () => {
    let redis: RedisServer;
    before(async () => {
      redis = await startRedis({ appendonly: false });
    });
    after(async () => {
      await redis?.stop();
    });

    it('starts a worker, runs an evaluation through it, inspects and operates the queue, drains on SIGTERM', async () => {
      const guide = all.filter((b) => b.lang === 'sh' && b.section.startsWith("Operator's guide"));
      const metricsPort = String(await freePort());
      const local = (line: string) => line.replace(/10\.0\.0\.5/g, '127.0.0.1').replace(/\b6380\b/g, String(redis.port)).replace(/\b9464\b/g, metricsPort);
      const env: Record<string, string> = {};
      const lines = guide.flatMap((b) => commands(b.body)).map(local);
      assert.match(lines[0]!, /^redis-server /, 'the guide starts with redis-server (the test starts its own)');
      const entry = join(root, 'src/cli/run.ts');
      let worker: ReturnType<typeof spawn> | undefined;
      let workerErr = '';
      let dashboard: ReturnType<typeof spawn> | undefined;
      let dashboardUrl: Promise<string> | undefined;
      try {
        for (const line of lines.slice(1)) {
          const exported = /^export (\w+)=(.*)$/.exec(line);
          if (exported) {
            env[exported[1]!] = words(exported[2]!, env)[0]!;
            continue;
          }
          const args = words(line, env).slice(2);
          assert.equal(words(line, env).slice(0, 2).join(' '), 'npx metaguard', line);
          if (args[0] === 'worker') {
            worker = spawn(process.execPath, ['--import', 'tsx', entry, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
            worker.stderr!.on('data', (d: Buffer) => (workerErr += d.toString()));
            continue;
          }
          if (args[0] === 'dashboard') {
            // Long-running like the worker: start it on a free port, check it answers, stop it at the end.
            dashboard = spawn(process.execPath, ['--import', 'tsx', entry, ...args, '--port', String(await freePort())], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
            let dashErr = '';
            dashboardUrl = new Promise<string>((resolve, reject) => {
              dashboard!.stderr!.on('data', (d: Buffer) => {
                dashErr += d.toString();
                const m = /dashboard_started url=(\S+)/.exec(dashErr);
                if (m) resolve(m[1]!);
              });
              dashboard!.once('exit', (code) => reject(new Error(`dashboard exited ${code}: ${dashErr}`)));
            });
            dashboardUrl.catch(() => undefined); // awaited below; this only keeps an early exit from being an unhandled rejection
            continue;
          }
          const r = await runCli(args, { cwd: mkdtempSync(join(tmpdir(), 'mg-readme-op-')), env, timeoutMs: 180_000 });
          const expected = /dlq retry ID\b/.test(line) ? 1 : 0; // the guide says: exits 1 when no batch has that ID
          assert.equal(r.code, expected, `${line}\n${show(r)}\nworker: ${workerErr.slice(-1000)}`);
          if (args[0] === 'evaluate') assert.match(r.stdout, /ADOPTED/);
          if (args[0] === 'queue' && args[1] === 'stats') assert.match(r.stdout, /1 active/, 'the worker is listed');
        }
        assert.ok(worker, 'the guide starts a worker');
        const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((res) => res.text());
        assert.match(metrics, /metamorphic_queue_cases_completed_total \d+/);
        if (dashboardUrl) {
          const res = await fetch(new URL('api/overview', await dashboardUrl));
          assert.equal(res.status, 200, 'the dashboard the guide starts answers /api/overview');
        }
      } finally {
        dashboard?.kill('SIGTERM');
        if (worker && worker.exitCode === null) {
          const exited = new Promise<number | null>((resolve) => worker!.once('exit', (code) => resolve(code)));
          worker.kill('SIGTERM');
          assert.equal(await exited, 0, `the worker drains and exits 0 on SIGTERM\n${workerErr.slice(-1000)}`);
        }
      }
    });
  });

  it('every npx metaguard line of the README names a command and flags that exist', async () => {
    const { dashboardSchema } = await import('../src/options/dashboard.ts');
    const { benchSchema } = await import('../src/options/bench.ts');
    const schemas: Record<string, Parameters<typeof parseFlags>[1]> = { evaluate: evaluateSchema, worker: workerSchema, queue: queueSchema, dashboard: dashboardSchema, bench: benchSchema, demo: {} };
    let n = 0;
    for (const b of all.filter((x) => x.lang === 'sh')) {
      for (const line of commands(b.body).filter((l) => l.startsWith('npx metaguard '))) {
        const [, , command, ...rest] = words(line, {});
        if (command === 'help') continue;
        assert.ok(schemas[command!], `${line}: command ${command} exists`);
        assert.doesNotThrow(() => parseFlags(rest, schemas[command!]!), line);
        n++;
      }
    }
    assert.ok(n >= 10, `checked ${n} lines`);
  });

  for (const section of ['Kafka', 'RabbitMQ', 'Amazon SQS'])
  it(`the ${section} lines parse: known flags and a valid queue config`, () => {
    const kafka = all.filter((b) => b.lang === 'sh' && b.section === section).flatMap((b) => commands(b.body));
    assert.ok(kafka.length >= 3);
    const env: Record<string, string> = {};
    const schemas: Record<string, Parameters<typeof parseFlags>[1]> = { evaluate: evaluateSchema, worker: workerSchema, queue: queueSchema };
    for (const line of kafka) {
      const exported = /^export (\w+)=(.*)$/.exec(line);
      if (exported) {
        env[exported[1]!] = words(exported[2]!, env)[0]!;
        validateQueueConfig(env[exported[1]!]);
        continue;
      }
      const [, , command, ...rest] = words(line, env);
      const { flags } = parseFlags(rest, schemas[command!]!);
      if (flags.queueConfig) validateQueueConfig(flags.queueConfig);
    }
  });
});
