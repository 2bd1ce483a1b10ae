#!/usr/bin/env node
/**
 * Installs the worker daemon as a systemd service:
 *
 *   <prefix>/etc/systemd/system/metaguard-worker@.service   the template unit, ExecStart= rewritten to
 *                                                            this node and this package's bin
 *   <prefix>/etc/metaguard/<instance>.env                    from systemd/worker.env.example, mode
 *                                                            0640, never overwritten
 *   user and group `metaguard`                               only when prefix is /, and only if missing
 *
 * then prints the commands to run next. Idempotent: a second run changes nothing (an env file that
 * exists is kept; the unit is rewritten only when it differs). No dependencies; Node >= 20.
 * Bad usage and every failure print one line and exit 2. Operator's guide: docs/operations.md.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ME = 'install-systemd';
const UNIT_NAME = 'metaguard-worker@.service';
const SERVICE_USER = 'metaguard';
/** What ProtectHome=yes hides from the service. */
const HIDDEN_BY_PROTECT_HOME = ['/home/', '/root/', '/run/user/'];

/** Node.js lines this package supports (package.json engines: >=22.12.0). */
function supportedNode(v) {
  const m = /^v(\d+)\.(\d+)\./.exec(v);
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 22 || (major === 22 && minor >= 12);
}

const usage = `Usage: node scripts/install-systemd.mjs [options]      (npm run install-service -- [options])

Installs the metaguard worker as a systemd service: the template unit, an environment file for one
instance, and the service user. Run as root for a real install; --prefix installs into a staging root.

Options:
  --instance NAME  instance name: metaguard-worker@NAME, /etc/metaguard/NAME.env (default: default)
  --prefix DIR     root to install under (default: /); the service user is created only for /
  --exec PATH      the metaguard executable the unit runs (default: this package's bin/metaguard.js);
                   a .js file runs as "<node> PATH worker"
  --node PATH      node binary for a .js --exec (default: the node running this script)
  --dry-run        print what would be done; change nothing
  -h, --help       this text`;

class UsageError extends Error {}

function fail(message) {
  process.stderr.write(`${ME}: ${String(message).split('\n')[0]}\n`);
  process.exit(2);
}

/** Quotes one ExecStart= argument: `%` and `$` are specifier/variable syntax in unit files. */
function unitArg(arg) {
  const escaped = arg.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /[\s"'\\;]/.test(escaped) ? `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"` : escaped;
}

function isFile(path) {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function parseOptions(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        instance: { type: 'string', default: 'default' },
        prefix: { type: 'string', default: '/' },
        exec: { type: 'string' },
        node: { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    // parseArgs' messages span lines ("... To specify a positional argument ..."): keep the first.
    throw new UsageError(`${err.message.split('\n')[0]} (see --help)`);
  }
  const v = parsed.values;
  // Instance names go into a unit name and a file name: keep them to characters that need no
  // systemd-escape and cannot climb out of /etc/metaguard.
  if (!/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/.test(v.instance)) {
    throw new UsageError(`--instance: ${JSON.stringify(v.instance)} is not a valid instance name (letters, digits, _ . : -, at most 64, not starting with a symbol)`);
  }
  if (!v.prefix) throw new UsageError('--prefix: must not be empty');
  return v;
}

function main(argv) {
  const opts = parseOptions(argv);
  if (opts.help) {
    process.stdout.write(usage + '\n');
    return;
  }
  const dryRun = opts['dry-run'];
  const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  const prefix = resolve(opts.prefix);
  const realRoot = prefix === '/';
  if (existsSync(prefix) && !statSync(prefix).isDirectory()) throw new UsageError(`--prefix: ${prefix} is not a directory`);
  if (realRoot && !dryRun && process.getuid?.() !== 0) {
    throw new UsageError('installing into / needs root: sudo npm run install-service (or --prefix DIR, or --dry-run)');
  }

  const exec = resolve(opts.exec ?? join(packageRoot, 'bin', 'metaguard.js'));
  if (!isFile(exec)) throw new UsageError(`--exec: ${exec} does not exist (build and install the package first, or pass the metaguard binary's path)`);
  const execIsScript = /\.[cm]?js$/.test(realpathSync(exec));
  const node = resolve(opts.node ?? process.execPath);
  if (execIsScript && !isFile(node)) throw new UsageError(`--node: ${node} does not exist`);
  if (!execIsScript && opts.node) throw new UsageError(`--node: only used when --exec is a .js file, and ${exec} is not`);
  const execStart = execIsScript ? `${unitArg(node)} ${unitArg(exec)} worker` : `${unitArg(exec)} worker`;

  const notes = [];
  const say = (line) => process.stdout.write(line + '\n');

  // --- The unit --------------------------------------------------------------------------------------
  const template = readFileSync(join(packageRoot, 'systemd', UNIT_NAME), 'utf8');
  if (!/^ExecStart=/m.test(template)) throw new Error(`systemd/${UNIT_NAME} has no ExecStart= line`);
  const docs = pathToFileURL(join(packageRoot, 'docs', 'operations.md')).href.replace(/%/g, '%%');
  const unit = template
    .replace(/^ExecStart=.*$/m, `ExecStart=${execStart}`)
    .replace(/^Documentation=.*$/m, `Documentation=${docs}`);
  const unitPath = join(prefix, 'etc', 'systemd', 'system', UNIT_NAME);
  const unitBefore = existsSync(unitPath) ? readFileSync(unitPath, 'utf8') : undefined;
  const unitAction = unitBefore === undefined ? 'installed' : unitBefore === unit ? 'unchanged' : 'updated';
  if (!dryRun && unitAction !== 'unchanged') {
    mkdirSync(dirname(unitPath), { recursive: true, mode: 0o755 });
    // Write then rename, so systemd never reads half a unit.
    const tmp = `${unitPath}.${process.pid}.tmp`;
    writeFileSync(tmp, unit, { mode: 0o644 });
    chmodSync(tmp, 0o644);
    renameSync(tmp, unitPath);
  }
  say(unitAction === 'unchanged' ? `unchanged ${unitPath}` : `${dryRun ? 'would have ' : ''}${unitAction} ${unitPath}`);
  say(`  ExecStart=${execStart}`);
  if (execIsScript) {
    // The unit runs this node for months: say which line it is, and flag an unsupported one now.
    const probe = spawnSync(node, ['--version'], { encoding: 'utf8' });
    const nodeVersion = probe.status === 0 ? probe.stdout.trim() : undefined;
    say(`  node ${nodeVersion ?? '(did not answer --version)'}`);
    if (!nodeVersion || !supportedNode(nodeVersion)) {
      notes.push(`${node} is ${nodeVersion ?? 'not a working node'}: metaguard supports Node.js 22 (>= 22.12) and 24 LTS; pass --node with a supported binary`);
    }
  }
  if (unitAction === 'updated') notes.push('the unit changed: local changes belong in `systemctl edit metaguard-worker@.service` (a drop-in), which survives reinstalls');

  for (const path of execIsScript ? [exec, node] : [exec]) {
    const real = realpathSync(path);
    if (HIDDEN_BY_PROTECT_HOME.some((dir) => real.startsWith(dir))) {
      notes.push(`${real} is under ${HIDDEN_BY_PROTECT_HOME.find((d) => real.startsWith(d))}, which the unit's ProtectHome=yes hides: install node and metaguard globally (e.g. /usr/lib/node_modules) or set ProtectHome=read-only in a drop-in`);
    }
  }
  if (execIsScript && !existsSync(join(dirname(realpathSync(exec)), '..', 'dist', 'src', 'cli', 'run.js'))) {
    notes.push(`${exec} is not built yet: run \`npm ci && npm run build\` in ${relative(process.cwd(), resolve(dirname(realpathSync(exec)), '..')) || '.'} before starting the service`);
  }

  // --- The environment file ----------------------------------------------------------------------------
  const envDir = join(prefix, 'etc', 'metaguard');
  const envPath = join(envDir, `${opts.instance}.env`);
  let envText;
  if (existsSync(envPath)) {
    say(`kept existing ${envPath} (never overwritten)`);
    envText = readFileSync(envPath, 'utf8');
    const mode = statSync(envPath).mode & 0o777;
    if (mode & 0o007) notes.push(`${envPath} is readable by everyone (mode ${mode.toString(8)}) and may hold the Redis password: chmod 0640 ${envPath}`);
  } else {
    envText = readFileSync(join(packageRoot, 'systemd', 'worker.env.example'), 'utf8')
      // The example's paths name the instance "default"; env files are not specifier-expanded (%i).
      .replaceAll('/var/cache/metaguard/default', `/var/cache/metaguard/${opts.instance}`)
      .replaceAll('/var/log/metaguard/default', `/var/log/metaguard/${opts.instance}`);
    if (!dryRun) {
      mkdirSync(envDir, { recursive: true, mode: 0o755 });
      // 'wx': fails if the file appeared meanwhile, so an existing file is never replaced.
      writeFileSync(envPath, envText, { mode: 0o640, flag: 'wx' });
      chmodSync(envPath, 0o640);
    }
    say(`${dryRun ? 'would have ' : ''}created ${envPath} (mode 0640) from systemd/worker.env.example: set METAGUARD_QUEUE_CONFIG in it`);
  }

  // --- The service user ----------------------------------------------------------------------------------
  if (!realRoot) {
    say(`skipped creating user ${SERVICE_USER}: prefix is ${prefix}, not / (on the target host: useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --user-group ${SERVICE_USER})`);
  } else if (spawnSync('getent', ['passwd', SERVICE_USER], { stdio: 'ignore' }).status === 0) {
    say(`user ${SERVICE_USER} exists`);
  } else {
    const groupExists = spawnSync('getent', ['group', SERVICE_USER], { stdio: 'ignore' }).status === 0;
    const args = ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--comment', 'metaguard worker daemon', ...(groupExists ? ['--gid', SERVICE_USER] : ['--user-group']), SERVICE_USER];
    if (!dryRun) {
      try {
        execFileSync('useradd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
      } catch (err) {
        const why = err.code === 'ENOENT' ? 'useradd not found' : (err.stderr?.toString().trim() || err.message);
        throw new Error(`could not create user ${SERVICE_USER}: ${why}`);
      }
    }
    say(`${dryRun ? 'would have ' : ''}created system user ${SERVICE_USER}: useradd ${args.map((a) => (/\s/.test(a) ? `'${a}'` : a)).join(' ')}`);
  }

  // --- What to run next ------------------------------------------------------------------------------------
  const env = parseEnvFile(envText);
  const port = env.METAGUARD_METRICS_PORT || '9464';
  const metricsOn = /^(1|true|yes|on)$/i.test(env.METAGUARD_METRICS ?? '');
  const unitInstance = `metaguard-worker@${opts.instance}`;
  for (const note of notes) say(`note: ${note}`);
  say('');
  say(realRoot ? 'Next:' : `Next, on the host that gets ${prefix} as its / :`);
  say(`  \${EDITOR:-vi} /etc/metaguard/${opts.instance}.env        # METAGUARD_QUEUE_CONFIG, THREADS, METRICS_PORT`);
  say('  systemctl daemon-reload');
  say(`  systemctl enable --now ${unitInstance}`);
  say(`  systemctl status ${unitInstance}`);
  say(`  journalctl -u ${unitInstance} -f`);
  say(`  curl 127.0.0.1:${port}/healthz${metricsOn ? '' : '        # after setting METAGUARD_METRICS=1'}`);
}

/** Just enough of systemd's EnvironmentFile= syntax to read the metrics settings back. */
function parseEnvFile(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (m) out[m[1]] = m[2].replace(/^"(.*)"$|^'(.*)'$/, '$1$2');
  }
  return out;
}

// `... | head` closing the pipe early is not an install failure.
process.stdout.on('error', (err) => {
  if (err.code !== 'EPIPE') throw err;
});

try {
  main(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError) fail(err.message);
  const e = /** @type {NodeJS.ErrnoException} */ (err);
  if (e.code === 'EACCES' || e.code === 'EPERM') fail(`${e.path ?? 'a file'}: permission denied${isAbsolute(e.path ?? '') && (e.path ?? '').startsWith('/etc') ? ' (run as root, e.g. sudo npm run install-service)' : ''}`);
  if (e.code === 'EEXIST') fail(`${e.path}: appeared while installing; nothing overwritten, run again`);
  fail(e.message ?? String(err));
}
