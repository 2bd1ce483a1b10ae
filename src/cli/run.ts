/** Process entry of the CLI: `bin/metaguard.js` loads this from dist/; tests spawn it from source. */
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
