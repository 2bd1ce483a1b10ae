// Entry point for spawning the CLI from source in tests: `node --import tsx test/helpers/cli-entry.ts ARGS`.
import { main } from '../../src/cli/main.ts';

process.exitCode = await main(process.argv.slice(2));
