/**
 * docs/reference.md is the project's contract: every flag, metric, error code, log event and
 * environment variable in the code is listed there, and everything it lists exists in the code.
 * README, --help and the code never point at documents a user does not have.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { evaluateSchema } from '../src/options/evaluate.ts';
import { workerSchema } from '../src/options/worker.ts';
import { queueSchema } from '../src/options/queue-command.ts';
import { benchSchema } from '../src/options/bench.ts';
import { dashboardSchema } from '../src/options/dashboard.ts';
import { queueConfigSchema } from '../src/options/queue.ts';
import { envName, flagName, type Schema } from '../src/options/schema.ts';
import { CaseErrorCodes, ErrorCodes } from '../src/errors.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const read = (p: string) => readFileSync(join(root, p), 'utf8');
const doc = read('docs/reference.md');

function files(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const p = join(dir, name);
    if (statSync(join(root, p)).isDirectory()) out.push(...files(p, ext));
    else if (ext.test(name)) out.push(p);
  }
  return out;
}
const code = [...files('src', /\.ts$/), 'scripts/install-systemd.mjs'].map((p) => read(p)).join('\n');

/** The `## title` section of the reference, up to the next `## `. */
function section(title: string): string {
  const start = doc.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `reference has a "## ${title}" section`);
  const end = doc.indexOf('\n## ', start + 4);
  return doc.slice(start, end < 0 ? undefined : end);
}
/** The `### title` subsection. */
function subsection(title: string): string {
  const start = doc.indexOf(`\n### ${title}\n`);
  assert.ok(start >= 0, `reference has a "### ${title}" section`);
  const end = doc.slice(start + 5).search(/\n##+ /);
  return doc.slice(start, end < 0 ? undefined : start + 5 + end);
}

const commandSchemas: Record<string, Schema> = { evaluate: evaluateSchema, worker: workerSchema, queue: queueSchema, bench: benchSchema, dashboard: dashboardSchema };
/** A field's environment variable: its own name, or METAGUARD_<KEY>. */
const envOf = (key: string, field: { env?: string }) => field.env ?? envName(key);
const installFlags = ['--instance', '--prefix', '--exec', '--node', '--dry-run'];
const globalFlags = ['--help', '--version'];
/** Placeholders the reference uses to describe flag syntax. */
const syntax = ['--flag', '--snake_case'];

describe('docs/reference.md', () => {
  it('lists every flag of every command in that command\'s section, with its environment variable', () => {
    for (const [command, schema] of Object.entries(commandSchemas)) {
      const text = subsection(`\`metaguard ${command}\``);
      for (const [key, field] of Object.entries(schema)) {
        assert.match(text, new RegExp('`--' + flagName(key) + '[ `]'), `${command} --${flagName(key)} is documented`);
        if (!field.noEnv) assert.ok(text.includes('`' + envOf(key, field) + '`'), `${command}: ${envOf(key, field)} is documented`);
      }
    }
    const install = subsection('`npm run install-service -- [options]`');
    for (const f of installFlags) assert.ok(install.includes('`' + f), `install-service ${f} is documented`);
  });

  it('names no flag that does not exist', () => {
    const known = new Set([...syntax, ...Object.values(commandSchemas).flatMap((s) => Object.keys(s).map((k) => '--' + flagName(k))), ...installFlags, ...globalFlags]);
    for (const m of doc.matchAll(/(?<![\w-])--[a-z][a-z0-9_-]*/g)) {
      // --snake_case spellings are accepted for every flag.
      const flag = known.has(m[0]) ? m[0] : m[0].replace(/_/g, '-');
      assert.ok(known.has(flag), `${m[0]} (reference.md) is a flag of some command`);
    }
  });

  it('lists every metric defined in src/observe/metrics.ts, and only those', () => {
    const metricsSrc = read('src/observe/metrics.ts');
    const defined = new Set([...metricsSrc.matchAll(/name: '([a-z_:][a-z0-9_:]*)'/g)].map((m) => m[1]!));
    assert.ok(defined.size >= 20, `found ${defined.size} metrics`);
    const metricsSection = section('Metrics');
    for (const m of defined) assert.ok(metricsSection.includes('`' + m), `${m} is documented in ## Metrics`);
    for (const m of doc.matchAll(/\b(metamorphic|metaguard)_[a-z0-9_]+/g)) {
      const name = m[0];
      if (/^metaguard_(process|nodejs)_/.test(name) || name === 'metaguard_version') continue;
      assert.ok(defined.has(name), `${name} (reference.md) is defined in src/observe/metrics.ts`);
    }
  });

  it('lists every error code and case outcome code, and only those', () => {
    const errors = section('Error codes');
    for (const c of [...Object.keys(ErrorCodes), ...Object.keys(CaseErrorCodes)]) assert.ok(errors.includes('`' + c + '`'), `${c} is documented`);
    const all = new Set([...Object.keys(ErrorCodes), ...Object.keys(CaseErrorCodes)]);
    for (const m of doc.matchAll(/\b(MG_ERR_[A-Z_]+|E_[A-Z]+)\b/g)) assert.ok(all.has(m[1]!), `${m[1]} (reference.md) is a code in src/errors.ts`);
    for (const m of code.matchAll(/MetaguardError\('([A-Z_]+)'/g)) assert.ok(m[1]! in ErrorCodes, `${m[1]} raised in the code is declared in src/errors.ts`);
  });

  it('lists every log event, and only those', () => {
    const logSrc = read('src/observe/log.ts');
    const union = logSrc.slice(logSrc.indexOf('export type LogEvent'), logSrc.indexOf(';', logSrc.indexOf('export type LogEvent')));
    const events = new Set([...union.matchAll(/'([a-z_]+)'/g)].map((m) => m[1]!));
    assert.ok(events.size >= 10);
    const logs = section('Log events');
    for (const e of events) assert.ok(logs.includes('`' + e + '`'), `log event ${e} is documented`);
    for (const m of logs.matchAll(/^\| `([a-z_]+)` \|/gm)) assert.ok(events.has(m[1]!), `${m[1]} (reference.md) is a LogEvent in src/observe/log.ts`);
  });

  it('lists every METAGUARD_* variable the code reads, and only existing ones', () => {
    const schemaEnv = new Set(Object.values(commandSchemas).flatMap((s) => Object.entries(s).filter(([, f]) => !f.noEnv).map(([k, f]) => envOf(k, f))));
    const inCode = new Set([...code.matchAll(/\bMETAGUARD_[A-Z0-9_]*[A-Z0-9]\b/g)].map((m) => m[0]));
    const native = read('native/build.rs');
    for (const m of native.matchAll(/\bMETAGUARD_[A-Z0-9_]*[A-Z0-9]\b/g)) inCode.add(m[0]);
    for (const v of inCode) assert.ok(doc.includes('`' + v + '`'), `${v} (read by the code) is documented`);
    const tests = files('test', /\.ts$/).map((p) => read(p)).join('\n');
    for (const m of doc.matchAll(/\bMETAGUARD_[A-Z0-9_]*[A-Z0-9]\b/g)) {
      const v = m[0];
      assert.ok(schemaEnv.has(v) || inCode.has(v) || tests.includes(v), `${v} (reference.md) is read somewhere`);
    }
  });

  it('lists every queue-config key', () => {
    const qc = section('Queue config');
    for (const key of Object.keys(queueConfigSchema)) assert.ok(qc.includes('`' + key + '`'), `queue-config key ${key} is documented`);
  });

  it('lists every command of the CLI', () => {
    const main = read('src/cli/main.ts');
    const table = main.slice(main.indexOf('const commands'), main.indexOf('};', main.indexOf('const commands')));
    for (const m of table.matchAll(/^\s+(\w+): async/gm)) assert.ok(section('Commands').includes('`metaguard ' + m[1]), `command ${m[1]} is documented`);
  });
});

describe('the repository stands alone', () => {
  it('README, docs, --help texts and the code never point at the team contract', () => {
    const paths = ['README.md', ...files('docs', /\.(md|yml|json)$/), ...files('src', /\.ts$/), ...files('scripts', /\.m?js$/), ...files('bin', /\.js$/), 'Dockerfile', 'package.json'];
    for (const p of paths) {
      const text = read(p);
      assert.ok(!/shared\/SPEC|SPEC\.md|SPEC §/.test(text), `${relative(root, join(root, p))} points at a contract users do not have`);
    }
  });
});
