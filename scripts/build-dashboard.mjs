// Bundles the dashboard page (its script, uPlot and the stylesheets) into dist/src/dashboard/assets/,
// so the installed package serves it without a bundler and without any network access.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { builtAssetsDir, bundlePage } from '../dist/src/dashboard/assets.js';

const { js, css } = await bundlePage();
const dir = builtAssetsDir();
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'app.js'), js);
writeFileSync(join(dir, 'app.css'), css);
console.log(`dashboard page bundled: ${dir} (app.js ${js.length} B, app.css ${css.length} B)`);
