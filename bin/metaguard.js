#!/usr/bin/env node
// The CLI runs from the build (dist/). In a source checkout, run `npm run build` first.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/src/cli/run.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('metaguard: not built yet: run `npm run build` in ' + new URL('..', import.meta.url).pathname + '\n');
  process.exit(2);
}
await import(entry.href);
