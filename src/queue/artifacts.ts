/**
 * Content-addressed code shipping. The coordinator publishes the task and implementation sources as
 * artifacts named by their sha256; workers fetch them, verify the hash, and cache them on disk. A
 * worker never loads a path named in a message: it loads only files it wrote under its own cache,
 * named by the hash it verified.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { extname, join, basename } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MetaguardError } from '../errors.js';
import { sha256 } from '../util/hash.js';
import type { ArtifactRef, JobStore } from './types.js';

export { sha256 };

const ALLOWED_EXT = new Set(['.mjs', '.js', '.cjs', '.ts', '.mts', '.cts']);

/** Reads a module file (a bundle): its bytes and its reference for the job manifest. `name` is for messages. */
export function loadArtifact(url: string, name?: string): { ref: ArtifactRef; bytes: Uint8Array } {
  const path = fileURLToPath(url);
  const bytes = readFileSync(path);
  return { ref: { sha256: sha256(bytes), ext: extname(path) || '.mjs', name: name ?? basename(path) }, bytes };
}

/** Reads a module file (a bundle) and publishes it; returns its reference for the job manifest. */
export async function publishArtifact(backend: JobStore, url: string, name?: string): Promise<ArtifactRef> {
  const { ref, bytes } = loadArtifact(url, name);
  await backend.putArtifact(ref.sha256, bytes);
  return ref;
}

export class ArtifactCache {
  readonly #dir: string;
  readonly #verified = new Map<string, string>();

  constructor(dir: string) {
    this.#dir = join(dir, 'artifacts');
    mkdirSync(this.#dir, { recursive: true });
    // Artifacts are ES modules; without this, Node and tsx would treat .js/.ts here as CommonJS.
    const pkg = join(this.#dir, 'package.json');
    if (!existsSync(pkg)) writeFileSync(pkg, '{ "type": "module", "private": true }\n');
  }

  /** Returns a file URL of the verified artifact, fetching it from the backend when not cached. */
  async resolve(backend: JobStore, ref: ArtifactRef): Promise<string> {
    if (!/^[0-9a-f]{64}$/.test(ref.sha256)) throw new MetaguardError('MG_ERR_ARTIFACT', `artifact ${ref.name}: malformed sha256`);
    if (!ALLOWED_EXT.has(ref.ext)) throw new MetaguardError('MG_ERR_ARTIFACT', `artifact ${ref.name}: extension ${JSON.stringify(ref.ext)} is not a module extension`);
    const key = ref.sha256 + ref.ext;
    const known = this.#verified.get(key);
    if (known) return known;
    const file = join(this.#dir, key);
    if (existsSync(file) && sha256(readFileSync(file)) === ref.sha256) return this.#remember(key, file);
    const bytes = await backend.getArtifact(ref.sha256);
    if (!bytes) throw new MetaguardError('MG_ERR_ARTIFACT', `artifact ${ref.name} (${ref.sha256.slice(0, 12)}) is not on the backend (expired or never published)`);
    if (sha256(bytes) !== ref.sha256) throw new MetaguardError('MG_ERR_ARTIFACT', `artifact ${ref.name} does not match its sha256 (tampered or corrupt)`);
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, bytes, { mode: 0o640 });
    renameSync(tmp, file);
    return this.#remember(key, file);
  }

  #remember(key: string, file: string): string {
    const url = pathToFileURL(file).href;
    this.#verified.set(key, url);
    return url;
  }
}
