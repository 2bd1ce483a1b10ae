#!/usr/bin/env node
// The CLI runs from the build (dist/). In a source checkout, run `npm run build` first.
import { existsSync } from 'node:fs';

const built = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(built)) {
  process.stderr.write('metaguard: not built yet: run `npm run build` in ' + new URL('..', import.meta.url).pathname + '\n');
  process.exit(2);
}
const { main } = await import(built.href);
process.exitCode = await main(process.argv.slice(2));
