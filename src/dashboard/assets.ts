/**
 * The page's script and stylesheet: one bundle (the page code, uPlot and their CSS) made by esbuild
 * at build time (`npm run build` writes `dist/src/dashboard/assets/`). No CDN, nothing fetched at run
 * time: the dashboard works offline. Running from source (tsx, tests), the same bundle is made in
 * memory once at start-up.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MetaguardError } from '../errors.js';
import { packageRoot, runningFromSource } from '../util/paths.js';

export interface PageAssets {
  js: string;
  css: string;
}

/** Where the page's source lives (bundled from here) and where the build puts the bundle. */
export const pageEntry = () => join(packageRoot(), 'src', 'dashboard', 'page', 'app.ts');
export const builtAssetsDir = () => join(packageRoot(), 'dist', 'src', 'dashboard', 'assets');

/** Bundles the page with esbuild (a devDependency: used by the build, and when running from source). */
export async function bundlePage(): Promise<PageAssets> {
  let esbuild: typeof import('esbuild');
  try {
    esbuild = await import('esbuild');
  } catch (err) {
    throw new MetaguardError('MG_ERR_DASHBOARD_ASSETS', 'dashboard page is not built (run `npm run build`) and esbuild is not installed to build it', { cause: err });
  }
  const result = await esbuild.build({
    entryPoints: [pageEntry()],
    bundle: true,
    minify: true,
    format: 'iife',
    target: 'es2022',
    platform: 'browser',
    write: false,
    outdir: 'out',
    legalComments: 'inline',
    logLevel: 'silent',
  });
  const js = result.outputFiles.find((f) => f.path.endsWith('.js'));
  const css = result.outputFiles.find((f) => f.path.endsWith('.css'));
  if (!js || !css) throw new MetaguardError('MG_ERR_DASHBOARD_ASSETS', 'esbuild did not produce the page script and stylesheet');
  return { js: js.text, css: css.text };
}

/** The built bundle (from `dist/`), or a fresh one when running from source. */
export async function loadPageAssets(): Promise<PageAssets> {
  if (runningFromSource) return bundlePage();
  try {
    const dir = builtAssetsDir();
    return { js: readFileSync(join(dir, 'app.js'), 'utf8'), css: readFileSync(join(dir, 'app.css'), 'utf8') };
  } catch {
    return bundlePage();
  }
}
