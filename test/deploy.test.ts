/**
 * Deployment files: the systemd template unit, the environment file example, the install
 * script, the Dockerfile and .dockerignore, and the monitoring files under docs/. Checks use the real
 * tools where this machine has them (systemd-analyze, python3's yaml) and say why they skip otherwise.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { workerSchema } from '../src/options/worker.ts';
import { envName, resolveOptions } from '../src/options/schema.ts';
import { validateQueueConfig } from '../src/options/queue.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const UNIT = 'systemd/metaguard-worker@.service';
const INSTALL = join(root, 'scripts', 'install-systemd.mjs');

function tempDir(t: { after(fn: () => void): void }, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `mg-deploy-${name}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const hasSystemdAnalyze = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0;
const noSystemdAnalyze = hasSystemdAnalyze ? false : 'systemd-analyze is not installed';

// ---- unit file ----------------------------------------------------------------------------------------

/** Parses a unit file into section → key → values (repeated keys accumulate; comments dropped). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      current = new Map();
      sections.set(section[1], current);
      continue;
    }
    const kv = /^([A-Za-z0-9]+)=(.*)$/.exec(line);
    assert.ok(kv && current, `unit line is KEY=value inside a section: ${raw}`);
    const values = current.get(kv[1]) ?? [];
    values.push(kv[2]);
    current.set(kv[1], values);
  }
  return sections;
}

/** systemd time span → seconds (the forms the unit uses: 45s, 10min, 1h, bare seconds). */
function seconds(span: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|sec|min|m|h)?$/.exec(span.trim());
  assert.ok(m, `time span ${span}`);
  const factor = { ms: 0.001, s: 1, sec: 1, min: 60, m: 60, h: 3600 }[m[2] ?? 's']!;
  return Number(m[1]) * factor;
}

function runInstall(args: string[]) {
  const r = spawnSync(process.execPath, [INSTALL, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Installs into a fresh temp root with ExecStart pointing at this checkout; returns the unit path. */
function installedUnit(t: { after(fn: () => void): void }): string {
  const prefix = tempDir(t, 'unit');
  const r = runInstall(['--prefix', prefix, '--instance', 'test', '--exec', join(root, 'bin', 'metaguard.js')]);
  assert.equal(r.code, 0, r.stderr);
  return join(prefix, 'etc', 'systemd', 'system', 'metaguard-worker@.service');
}

describe('systemd unit', () => {
  const unit = parseUnit(read(UNIT));
  const service = unit.get('Service')!;
  const one = (key: string) => {
    const v = service.get(key);
    assert.ok(v && v.length > 0, `[Service] ${key}= is set`);
    return v[v.length - 1];
  };

  it('is a notify service with a watchdog, the instance env file and the restart policy', () => {
    assert.equal(one('Type'), 'notify');
    assert.equal(one('NotifyAccess'), 'main');
    assert.ok(seconds(one('WatchdogSec')) > 0);
    assert.equal(one('EnvironmentFile'), '/etc/metaguard/%i.env');
    assert.match(one('ExecStart'), /^\/\S+ \/\S+\/bin\/metaguard\.js worker$/, 'absolute node and bin paths');
    assert.equal(one('Restart'), 'on-failure');
    assert.ok(seconds(one('RestartSec')) > 0);
    assert.ok(one('RestartPreventExitStatus').split(/\s+/).includes('78'), 'bad config (78) is not restarted');
    assert.equal(one('KillSignal'), 'SIGTERM');
    const drain = workerSchema.shutdownTimeoutS.default;
    assert.ok(seconds(one('TimeoutStopSec')) > drain, `TimeoutStopSec above the ${drain} s drain deadline`);
    assert.match(one('MemoryMax'), /^\d+[KMGT]?$/);
  });

  it('runs unprivileged in a sandbox node can live with', () => {
    assert.ok(!['root', '0'].includes(one('User')), 'not root');
    assert.match(one('CacheDirectory'), /^metaguard\/%i$/);
    assert.match(one('LogsDirectory'), /^metaguard\/%i$/);
    for (const [key, value] of Object.entries({ ProtectSystem: 'strict', ProtectHome: 'yes', PrivateTmp: 'yes', NoNewPrivileges: 'yes', UMask: '0077', ProtectProc: 'invisible' })) {
      assert.equal(one(key), value, key);
    }
    assert.equal(one('CapabilityBoundingSet'), '');
    assert.deepEqual(one('RestrictAddressFamilies').split(/\s+/).sort(), ['AF_INET', 'AF_INET6', 'AF_UNIX']);
    // V8's JIT needs to make written pages executable.
    assert.notEqual(service.get('MemoryDenyWriteExecute')?.at(-1), 'yes');
    // With a syscall filter, node must get an errno rather than SIGSYS for the calls it probes.
    assert.ok(service.has('SystemCallFilter'));
    assert.match(one('SystemCallErrorNumber'), /^E[A-Z]+$/);
  });

  it('passes systemd-analyze verify once installed', { skip: noSystemdAnalyze }, (t) => {
    const path = installedUnit(t);
    const r = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' });
    const ours = (r.stderr + r.stdout).split('\n').filter((l) => l.includes('metaguard-worker'));
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(ours, [], 'no warnings about the unit (unknown keys, bad values)');
  });

  it('systemd-analyze verify catches a broken unit (so the check above means something)', { skip: noSystemdAnalyze }, (t) => {
    const dir = tempDir(t, 'broken');
    const path = join(dir, 'metaguard-worker@.service');
    writeFileSync(path, read(UNIT).replace(/^ExecStart=.*$/m, 'ExecStart=/nonexistent/node worker'));
    assert.notEqual(spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' }).status, 0);
  });

  it('has a systemd-analyze security exposure of 2.5 or lower', { skip: noSystemdAnalyze }, () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=true', join(root, UNIT)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(r.stdout);
    assert.ok(m, `exposure line in:\n${r.stdout.slice(-500)}`);
    assert.ok(Number(m[1]) <= 2.5, `exposure ${m[1]} <= 2.5`);
  });
});

// ---- environment file -------------------------------------------------------------------------------------

/** `timeoutS` → `METAGUARD_TIMEOUT_S`, written out independently of src/options/schema.ts. */
const toEnv = (key: string) => 'METAGUARD_' + key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();

/**
 * systemd's EnvironmentFile= syntax (src/basic/env-file.c): `#`/`;` comment lines; a value may open
 * with single or double quotes (kept literally when they appear later in the value); a backslash
 * escapes the next character outside single quotes; trailing blanks of an unquoted value are dropped.
 */
function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (/^\s*[#;]/.test(line)) continue;
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$/.exec(line);
    if (!m) continue;
    let state: 'pre' | 'value' | 'single' | 'double' = 'pre';
    let value = '';
    let keep = 0; // length of the value without trailing unquoted blanks
    const raw = m[2];
    for (let i = 0; i < raw.length; i++) {
      const c = raw[i];
      if (state === 'single') {
        if (c === "'") state = 'pre';
        else value += c;
      } else if (state === 'double') {
        if (c === '"') state = 'pre';
        else if (c === '\\' && i + 1 < raw.length) value += '"\\`$'.includes(raw[i + 1]) ? raw[++i] : c + raw[++i];
        else value += c;
      } else if (state === 'pre' && (c === "'" || c === '"')) {
        state = c === "'" ? 'single' : 'double';
      } else if (state === 'pre' && /\s/.test(c)) {
        // blanks before a value are skipped
      } else if (c === '\\' && i + 1 < raw.length) {
        state = 'value';
        value += raw[++i];
      } else {
        state = 'value';
        value += c;
      }
      if (state !== 'value' || !/\s/.test(c)) keep = value.length;
    }
    out[m[1]] = value.slice(0, keep);
  }
  return out;
}

describe('worker.env.example', () => {
  const text = read('systemd/worker.env.example');
  const names = Object.entries(workerSchema)
    .filter(([, f]) => !(f as { noEnv?: boolean }).noEnv)
    .map(([key]) => key);

  it('documents every METAGUARD_ variable the worker reads', () => {
    assert.ok(names.length >= 14);
    for (const key of names) {
      assert.equal(toEnv(key), envName(key), `name of ${key}`);
      assert.match(text, new RegExp(`^#?${toEnv(key)}=`, 'm'), `${toEnv(key)} is in worker.env.example`);
    }
    for (const extra of ['METAGUARD_BATCH_SIZE', 'METAGUARD_NATIVE', 'NODE_OPTIONS']) assert.match(text, new RegExp(`^#?${extra}=`, 'm'), extra);
  });

  it('names only variables that exist', () => {
    const known = new Set([...names.map(toEnv), 'METAGUARD_BATCH_SIZE', 'METAGUARD_NATIVE', 'METAGUARD_NATIVE_PATH', 'NODE_OPTIONS']);
    for (const m of text.matchAll(/^#?([A-Z][A-Z0-9_]*)=/gm)) assert.ok(known.has(m[1]), `${m[1]} is a variable metaguard reads`);
  });

  it('configures a valid worker as written, and with every example line uncommented', () => {
    for (const source of [text, text.replace(/^#(?=[A-Z][A-Z0-9_]*=)/gm, '')]) {
      const env = parseEnvFile(source);
      assert.ok(env.METAGUARD_QUEUE_CONFIG, 'METAGUARD_QUEUE_CONFIG is set');
      const options = resolveOptions(workerSchema, { env });
      assert.equal(options.metrics, true);
      const config = validateQueueConfig(options.queueConfig);
      assert.equal(config.backend, 'redis');
      assert.equal(config.connection?.port, 6379);
    }
  });
});

// ---- install script ---------------------------------------------------------------------------------------

describe('scripts/install-systemd.mjs', () => {
  const exec = join(root, 'bin', 'metaguard.js');

  it('installs the unit (0644) and the env file (0640) into a prefix and prints what to run next', (t) => {
    const prefix = tempDir(t, 'install');
    const r = runInstall(['--prefix', prefix, '--instance', 'w1', '--exec', exec]);
    assert.equal(r.code, 0, r.stderr);
    const unitPath = join(prefix, 'etc/systemd/system/metaguard-worker@.service');
    const envPath = join(prefix, 'etc/metaguard/w1.env');
    assert.equal(statSync(unitPath).mode & 0o777, 0o644);
    assert.equal(statSync(envPath).mode & 0o777, 0o640);
    const unit = readFileSync(unitPath, 'utf8');
    assert.match(unit, new RegExp(`^ExecStart=${process.execPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} ${exec.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} worker$`, 'm'));
    assert.match(readFileSync(envPath, 'utf8'), /^#METAGUARD_LOG_FILE=\/var\/log\/metaguard\/w1\/worker\.jsonl$/m, 'instance paths');
    for (const command of ['systemctl daemon-reload', 'systemctl enable --now metaguard-worker@w1', 'journalctl -u metaguard-worker@w1', 'curl 127.0.0.1:9464/healthz']) {
      assert.ok(r.stdout.includes(command), `prints ${command}`);
    }
    assert.match(r.stdout, /skipped creating user metaguard/, 'no user outside /');
  });

  it('is idempotent and never overwrites an existing env file', (t) => {
    const prefix = tempDir(t, 'again');
    assert.equal(runInstall(['--prefix', prefix, '--exec', exec]).code, 0);
    const envPath = join(prefix, 'etc/metaguard/default.env');
    const unitPath = join(prefix, 'etc/systemd/system/metaguard-worker@.service');
    const mine = 'METAGUARD_QUEUE_CONFIG={"backend":"redis","connection":{"host":"10.0.0.5"}}\nMETAGUARD_METRICS=1\nMETAGUARD_METRICS_PORT=9470\n';
    writeFileSync(envPath, mine);
    const unitBefore = readFileSync(unitPath, 'utf8');
    const r = runInstall(['--prefix', prefix, '--exec', exec]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(envPath, 'utf8'), mine);
    assert.equal(readFileSync(unitPath, 'utf8'), unitBefore);
    assert.match(r.stdout, /kept existing .*default\.env/);
    assert.match(r.stdout, /unchanged .*metaguard-worker@\.service/);
    assert.ok(r.stdout.includes('curl 127.0.0.1:9470/healthz'), 'port read back from the env file');
    // A hand-edited unit is put back (local changes belong in drop-ins).
    writeFileSync(unitPath, unitBefore.replace('MemoryMax=4G', 'MemoryMax=1G'));
    const again = runInstall(['--prefix', prefix, '--exec', exec]);
    assert.match(again.stdout, /updated .*metaguard-worker@\.service/);
    assert.equal(readFileSync(unitPath, 'utf8'), unitBefore);
  });

  it('changes nothing with --dry-run', (t) => {
    const prefix = tempDir(t, 'dry');
    const r = runInstall(['--prefix', prefix, '--dry-run', '--exec', exec]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /would have installed/);
    assert.deepEqual(readdirSync(prefix), []);
  });

  it('exits 2 with one line on bad usage', (t) => {
    const prefix = tempDir(t, 'bad');
    for (const args of [
      ['--bogus'],
      ['--prefix', prefix, '--instance', '../etc/passwd'],
      ['--prefix', prefix, '--instance'],
      ['--prefix', prefix, '--exec', join(prefix, 'missing.js')],
      ['--prefix', process.execPath], // a file, not a folder (a missing folder is created)
      ['--prefix', prefix, 'positional'],
    ]) {
      const r = runInstall(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^install-systemd: [^\n]+\n$/, `one line for ${args.join(' ')}: ${JSON.stringify(r.stderr)}`);
    }
    assert.deepEqual(readdirSync(prefix), [], 'nothing written');
  });
});

// ---- Dockerfile -------------------------------------------------------------------------------------------

interface Instruction {
  keyword: string;
  args: string;
  stage: number;
}

/** Instructions of a Dockerfile, continuation lines joined, comments dropped; `stage` counts FROMs. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue;
    const line = pending + raw.trim();
    if (line.endsWith('\\')) {
      pending = line.slice(0, -1) + ' ';
      continue;
    }
    pending = '';
    if (line.trim() === '') continue;
    const m = /^(\w+)\s+(.*)$/.exec(line.trim());
    assert.ok(m, `instruction: ${line}`);
    const keyword = m[1].toUpperCase();
    if (keyword === 'FROM') stage++;
    out.push({ keyword, args: m[2], stage });
  }
  return out;
}

/** Splits COPY/ADD arguments into flags, sources and destination (shell and JSON forms). */
function copyParts(args: string): { flags: Record<string, string>; sources: string[]; dest: string } {
  const tokens = args.trim().startsWith('[') ? (JSON.parse(args) as string[]) : args.trim().split(/\s+/);
  const flags: Record<string, string> = {};
  while (tokens[0]?.startsWith('--')) {
    const [k, v = ''] = tokens.shift()!.slice(2).split('=');
    flags[k] = v;
  }
  const dest = tokens.pop()!;
  return { flags, sources: tokens, dest };
}

/** .dockerignore matching as Docker does it: last matching pattern wins, `!` re-includes, parents count. */
function dockerIgnored(patterns: string[], path: string): boolean {
  const toRegex = (p: string) =>
    new RegExp(
      '^' +
        p
          .split('')
          .map((c, i, a) => (c === '*' ? (a[i + 1] === '*' ? '\u0000' : a[i - 1] === '*' ? '' : '[^/]*') : c === '?' ? '[^/]' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
          .join('')
          .replace(/\u0000\/?/g, '(?:.*/)?') +
        '$',
    );
  let ignored = false;
  const parts = path.split('/');
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pattern = (negate ? raw.slice(1) : raw).replace(/^\/+/, '').replace(/\/+$/, '');
    const re = toRegex(pattern);
    if (parts.some((_, i) => re.test(parts.slice(0, i + 1).join('/')))) ignored = !negate;
  }
  return ignored;
}

/** Files under `dir` (relative to root), skipping what the build context never contains. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    const rel = `${dir}/${entry.name}`;
    if (entry.isDirectory()) out.push(...filesUnder(rel));
    else out.push(rel);
  }
  return out;
}

describe('Dockerfile', () => {
  const instructions = parseDockerfile(read('Dockerfile'));
  const ignore = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const froms = instructions.filter((i) => i.keyword === 'FROM');
  const last = froms.length - 1;
  const final = instructions.filter((i) => i.stage === last);

  it('is multi-stage, non-root, health-checked, and runs the worker', () => {
    assert.ok(froms.length >= 2, 'at least two stages');
    for (const f of froms) assert.match(f.args.split(/\s+/)[0], /:[^/]+$/, `base image ${f.args} has a tag`);
    const user = final.filter((i) => i.keyword === 'USER').at(-1);
    assert.ok(user, 'the final stage sets USER');
    assert.ok(!/^(root|0)(:|$)/.test(user.args.trim()), `USER ${user.args} is not root`);
    const health = final.find((i) => i.keyword === 'HEALTHCHECK');
    assert.ok(health && /127\.0\.0\.1/.test(health.args) && /\/healthz/.test(health.args), 'HEALTHCHECK asks /healthz over loopback');
    const entry = final.find((i) => i.keyword === 'ENTRYPOINT');
    assert.ok(entry, 'ENTRYPOINT');
    const argv = JSON.parse(entry.args) as string[];
    assert.ok(argv.includes('worker') && /metaguard/.test(argv.join(' ')), `ENTRYPOINT ${entry.args} runs metaguard worker`);
    assert.equal(final.find((i) => i.keyword === 'STOPSIGNAL')?.args, 'SIGTERM');
    const env = final.filter((i) => i.keyword === 'ENV').map((i) => i.args).join(' ');
    assert.match(env, /METAGUARD_METRICS=1/);
    assert.match(env, /METAGUARD_METRICS_HOST=0\.0\.0\.0/);
    assert.match(env, new RegExp(`METAGUARD_METRICS_PORT=${workerSchema.metricsPort.default}\\b`));
  });

  it('builds the TypeScript and the native module, and ships them', () => {
    const run = instructions.filter((i) => i.keyword === 'RUN' && i.stage < last).map((i) => i.args).join('\n');
    for (const step of ['npm ci', 'npm run build', 'npm run build:native', 'npm prune --omit=dev']) assert.ok(run.includes(step), `build stage runs ${step}`);
    const shipped = final.filter((i) => i.keyword === 'COPY').map((i) => copyParts(i.args)).filter((c) => c.flags.from).flatMap((c) => c.sources);
    for (const path of ['package.json', 'node_modules', 'dist', 'bin', 'examples', 'native/*.node']) {
      assert.ok(shipped.some((s) => s.replace(/^\/src\//, '').replace(/\/$/, '') === path), `runtime stage copies ${path}`);
    }
  });

  it('copies only paths that exist in the repository and are not .dockerignore-d', () => {
    const stageNames = new Set(froms.map((f) => /\bAS\s+(\S+)/i.exec(f.args)?.[1]).filter(Boolean));
    let checked = 0;
    for (const i of instructions.filter((x) => x.keyword === 'COPY' || x.keyword === 'ADD')) {
      const { flags, sources } = copyParts(i.args);
      if (flags.from !== undefined) {
        assert.ok(stageNames.has(flags.from) || /[:/]/.test(flags.from), `--from=${flags.from} names a stage or an image`);
        continue;
      }
      for (const source of sources) {
        const rel = source.replace(/^\.\//, '').replace(/\/$/, '');
        assert.ok(existsSync(join(root, rel)), `COPY source ${source} exists`);
        assert.ok(!dockerIgnored(ignore, rel), `COPY source ${source} is not excluded by .dockerignore`);
        if (statSync(join(root, rel)).isDirectory()) {
          assert.ok(filesUnder(rel).some((f) => !dockerIgnored(ignore, f)), `${source} keeps some files in the context`);
        }
        checked++;
      }
    }
    assert.ok(checked >= 5, 'the build stage copies the sources from the context');
    // The build stage needs these; the context must keep them.
    for (const needed of ['package-lock.json', 'native/Cargo.toml', 'native/src/lib.rs', 'src/cli/run.ts', 'scripts/write-dist-entry.mjs']) {
      assert.ok(!dockerIgnored(ignore, needed), `${needed} stays in the build context`);
    }
    for (const secret of ['.git/config', 'systemd/worker.env.example', 'node_modules/x/index.js', 'native/target/release/x.so', 'prod.env']) {
      assert.ok(dockerIgnored(ignore, secret), `${secret} stays out of the build context`);
    }
  });

  it('relies on a build:native script in package.json', (t) => {
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    if (!scripts['build:native']) return t.skip('package.json has no build:native script yet (the Dockerfile runs it)');
    // Directly, or through scripts/build-native.mjs (which first says in one line what is missing).
    const command = scripts['build:native'].includes('scripts/build-native.mjs') ? read('scripts/build-native.mjs') : scripts['build:native'];
    assert.match(command, /napi build|'build', '--release'/);
  });
});

// ---- monitoring files -------------------------------------------------------------------------------------

/** Metric names the code defines (`name: '...'` in src/observe/metrics.ts). */
const definedMetrics = new Set([...read('src/observe/metrics.ts').matchAll(/name: '([a-z_:][a-z0-9_:]*)'/g)].map((m) => m[1]));
const histograms = new Set([...read('src/observe/metrics.ts').matchAll(/new Histogram\(\{\s*name: '([a-z0-9_]+)'/g)].map((m) => m[1]));

/** Names of metaguard metrics an expression uses, histogram series mapped to their histogram. */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\b(?:metamorphic|metaguard)_[a-z0-9_]+/g)].map((m) => {
    const base = m[0].replace(/_(bucket|sum|count)$/, '');
    return histograms.has(base) ? base : m[0];
  });
}

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** The rules file's alerts, without a YAML library: `- alert:` items and their keys, `|` blocks included. */
function alertsByLines(text: string): AlertRule[] {
  const rules: AlertRule[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = /^(\s*)- alert: (\S+)\s*$/.exec(lines[i]);
    if (!start) continue;
    const rule: AlertRule = { alert: start[2], expr: '' };
    const indent = start[1].length + 2;
    let section: 'labels' | 'annotations' | undefined;
    for (i++; i < lines.length && (lines[i].trim() === '' || lines[i].search(/\S/) >= indent); i++) {
      const line = lines[i];
      const depth = line.search(/\S/);
      if (line.trim() === '' || line.trim().startsWith('#')) continue;
      const kv = /^\s*([a-z_]+):\s*(.*)$/.exec(line);
      if (depth === indent && kv) {
        section = kv[1] === 'labels' || kv[1] === 'annotations' ? kv[1] : undefined;
        if (kv[1] === 'expr') {
          if (kv[2] === '|') {
            const block: string[] = [];
            while (i + 1 < lines.length && (lines[i + 1].trim() === '' || lines[i + 1].search(/\S/) > indent)) block.push(lines[++i].trim());
            rule.expr = block.join(' ').trim();
          } else rule.expr = kv[2];
        } else if (kv[1] === 'for') rule.for = kv[2];
      } else if (section && kv && depth > indent) {
        (rule[section] ??= {})[kv[1]] = kv[2].replace(/^"(.*)"$/, '$1');
      }
    }
    i--;
    rules.push(rule);
  }
  return rules;
}

const hasPyYaml = spawnSync('python3', ['-c', 'import yaml'], { stdio: 'ignore' }).status === 0;

describe('monitoring', () => {
  const alertsText = read('docs/prometheus-alerts.yml');
  const alerts = alertsByLines(alertsText);

  it('defines the metrics the monitoring files use', () => {
    assert.ok(definedMetrics.size >= 18, `found ${definedMetrics.size} metric names in metrics.ts`);
    assert.ok(histograms.has('metaguard_thread_case_duration_seconds'));
  });

  it('alert rules cover the fleet and use only metrics the code defines', () => {
    const names = alerts.map((a) => a.alert);
    assert.equal(new Set(names).size, names.length, 'unique alert names');
    for (const a of alerts) {
      assert.ok(a.expr, `${a.alert} has an expr`);
      assert.ok(a.labels?.severity, `${a.alert} has a severity`);
      assert.ok(a.annotations?.summary, `${a.alert} has a summary`);
      for (const m of metricsIn(a.expr)) assert.ok(definedMetrics.has(m), `${a.alert}: ${m} is defined in src/observe/metrics.ts`);
    }
    const exprs = alerts.map((a) => a.expr).join('\n');
    for (const needed of ['metamorphic_queue_pending_tasks', 'rate(metamorphic_queue_cases_requeued_total[5m])', 'metamorphic_queue_serialization_errors_total', 'reason="oom"', 'metamorphic_queue_timeout_failures_total']) {
      assert.ok(exprs.includes(needed), `an alert uses ${needed}`);
    }
    assert.match(exprs, /metamorphic_queue_active_workers\)? == 0/);
    assert.equal(alerts.find((a) => a.expr.includes('metamorphic_queue_active_workers'))?.for, '2m');
    assert.equal(alerts.find((a) => a.expr.includes('metamorphic_queue_pending_tasks'))?.for, '10m');
  });

  it('alert rules are valid YAML in Prometheus rule-file shape', { skip: hasPyYaml ? false : 'python3 with PyYAML is not available' }, () => {
    const r = spawnSync('python3', ['-c', 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', join(root, 'docs/prometheus-alerts.yml')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { groups: { name: string; rules: AlertRule[] }[] };
    const rules = doc.groups.flatMap((g) => {
      assert.ok(g.name && Array.isArray(g.rules), 'group has name and rules');
      return g.rules;
    });
    for (const rule of rules) {
      assert.deepEqual(Object.keys(rule).filter((k) => !['alert', 'expr', 'for', 'labels', 'annotations', 'keep_firing_for'].includes(k)), [], `${rule.alert}: only rule keys`);
      if (rule.for) assert.match(rule.for, /^\d+[smhd]$/);
    }
    // The line-based reading used above agrees with a real YAML parser.
    assert.deepEqual(
      alerts.map((a) => [a.alert, a.expr.replace(/\s+/g, ' '), a.for, a.labels?.severity]),
      rules.map((a) => [a.alert, String(a.expr).trim().replace(/\s+/g, ' '), a.for, a.labels?.severity]),
    );
  });

  it('the Grafana dashboard is valid JSON with the panels operators need', () => {
    const dash = JSON.parse(read('docs/grafana-dashboard.json')) as {
      title: string;
      uid: string;
      templating: { list: { name: string }[] };
      panels: { id: number; type: string; title: string; gridPos: object; targets?: { expr: string; refId: string }[] }[];
    };
    assert.ok(dash.title && dash.uid);
    const ids = dash.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'unique panel ids');
    assert.ok(dash.templating.list.some((v) => v.name === 'datasource'), 'datasource variable');
    const exprs: string[] = [];
    for (const p of dash.panels) {
      assert.ok(p.gridPos, `${p.title} has a position`);
      if (p.type === 'row') continue;
      assert.ok(p.targets?.length, `${p.title} has queries`);
      for (const t of p.targets!) {
        exprs.push(t.expr);
        for (const m of metricsIn(t.expr)) assert.ok(definedMetrics.has(m), `${p.title}: ${m} is defined in src/observe/metrics.ts`);
      }
    }
    const all = exprs.join('\n');
    for (const needed of [
      'metamorphic_queue_pending_tasks',
      'metamorphic_queue_inflight_cases',
      'metamorphic_queue_active_workers',
      'metamorphic_cases_total',
      'metaguard_thread_utilization',
      'metaguard_thread_heap_used_bytes',
      'histogram_quantile(0.5, sum by (le) (rate(metaguard_thread_case_duration_seconds_bucket',
      'histogram_quantile(0.95, sum by (le) (rate(metaguard_thread_case_duration_seconds_bucket',
      'metaguard_thread_restarts_total',
      'metaguard_batch_size',
      'metaguard_compression_ratio',
    ]) {
      assert.ok(all.includes(needed), `a panel queries ${needed}`);
    }
    assert.match(all, /sum by \(role, status\) \(rate\(metamorphic_cases_total/);
    assert.match(all, /sum by \(reason\) \(increase\(metaguard_thread_restarts_total/);
  });

  it('operations.md names only defined metrics and the scrape job the alerts use', () => {
    const doc = read('docs/operations.md');
    for (const m of new Set(metricsIn(doc).filter((n) => !n.startsWith('metaguard_process_') && !n.startsWith('metaguard_nodejs_')))) {
      assert.ok(definedMetrics.has(m), `operations.md: ${m} is defined in src/observe/metrics.ts`);
    }
    for (const m of definedMetrics) assert.ok(doc.includes(m), `operations.md documents ${m}`);
    assert.match(doc, /job_name: metaguard-workers/);
    assert.match(alertsText, /job="metaguard-workers"/);
    for (const file of ['docs/prometheus-alerts.yml', 'docs/grafana-dashboard.json', 'systemd/worker.env.example']) {
      assert.ok(doc.includes(file), `operations.md points at ${file}`);
      assert.ok(existsSync(join(root, file)), `${relative(root, join(root, file))} exists`);
    }
  });
});
