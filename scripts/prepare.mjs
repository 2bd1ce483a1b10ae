#!/usr/bin/env node
// `prepare` (run by `npm ci` / `npm install` in a clone): compiles the TypeScript to dist/, then the
// native module when cargo and liblz4 are there. Without them it says in one line that the JS codec
// is used and why, and succeeds: the native module is an optional speed-up with the same frame format.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { delimiter } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeToolchainMissing } from './native-toolchain.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const say = (line) => process.stdout.write(`metaguard: ${line}\n`);
const run = (args) => spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });

if (!existsSync(`${root}src`) || !existsSync(`${root}tsconfig.build.json`)) process.exit(0); // an installed package: already built
if (!existsSync(`${root}node_modules/typescript/bin/tsc`)) {
  say(existsSync(`${root}dist/index.js`) ? 'TypeScript not installed (--omit=dev); keeping the existing dist/' : 'TypeScript not installed (--omit=dev): run npm ci without --omit=dev to build dist/');
} else {
  // The same steps as `npm run build`, read from package.json so the two never drift apart.
  const { scripts } = JSON.parse(readFileSync(`${root}package.json`, 'utf8'));
  const path = `${root}node_modules/.bin${delimiter}${process.env.PATH ?? ''}`;
  const build = spawnSync(scripts.build, { cwd: root, encoding: 'utf8', shell: true, env: { ...process.env, PATH: path } });
  if (build.status !== 0) {
    process.stderr.write(`${build.stdout ?? ''}${build.stderr ?? ''}`);
    process.stderr.write('metaguard: the build failed (errors above)\n');
    process.exit(1);
  }
  say('built dist/');
}

if (process.env.METAGUARD_NATIVE === '0') {
  say('native module not built (METAGUARD_NATIVE=0); the JS codec is used');
  process.exit(0);
}
const missing = nativeToolchainMissing();
if (missing) {
  say(`native module not built: ${missing}; the JS codec is used (same format, slower). Later: npm run build:native`);
  process.exit(0);
}
const built = run(['scripts/build-native.mjs']);
if (built.status === 0) say('built the native module (native codec and sd_notify)');
else {
  const last = `${built.stderr}`.split('\n').map((l) => l.trim()).filter((l) => /^error/i.test(l))[0] ?? 'see npm run build:native';
  say(`native module build failed (${last}); the JS codec is used. Details: npm run build:native`);
}
