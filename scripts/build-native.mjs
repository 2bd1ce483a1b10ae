#!/usr/bin/env node
// `npm run build:native`: builds native/metaguard.<platform>.node with @napi-rs/cli. Without cargo or
// liblz4 it prints one line saying what is missing and exits 1 (the JS codec works without it).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { nativeToolchainMissing } from './native-toolchain.mjs';

const missing = nativeToolchainMissing();
if (missing) {
  process.stderr.write(`build:native: cannot build the native module: ${missing}. metaguard works without it (JS codec).\n`);
  process.exit(1);
}
const napi = fileURLToPath(new URL('../node_modules/@napi-rs/cli/dist/cli.js', import.meta.url));
if (!existsSync(napi)) {
  process.stderr.write('build:native: @napi-rs/cli is not installed (a dev dependency: run npm ci without --omit=dev)\n');
  process.exit(1);
}
const r = spawnSync(process.execPath, [napi, 'build', '--release', '--platform', '--cwd', 'native', '--no-js', ...process.argv.slice(2)], { stdio: 'inherit' });
if (r.status !== 0) process.stderr.write('build:native: the native build failed (output above)\n');
process.exit(r.status ?? 1);
