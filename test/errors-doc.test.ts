/**
 * docs/errors.md lists every error code with its meaning, whether it is retryable and what the
 * operator does; this keeps code and doc in step both ways: every code declared in src/errors.ts and
 * every code the source raises, sends or stores is in the doc, every code in the doc is declared, and
 * the doc's "retryable" column says what isRetryableCode says.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { allCodes, CaseErrorCodes, ErrorCodes, isRetryableCode } from '../src/errors.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const read = (p: string) => readFileSync(join(root, p), 'utf8');
const doc = read('docs/errors.md');

function files(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const p = join(dir, name);
    if (statSync(join(root, p)).isDirectory()) out.push(...files(p));
    else if (/\.(ts|lua)$/.test(name)) out.push(p);
  }
  return out;
}

/** Rows of the doc's tables: first cell (a code in backticks) → the other cells. */
function rows(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const m of doc.matchAll(/^\| `((?:MG_ERR|E)_[A-Z_]+)` \|(.*)\|$/gm)) out.set(m[1]!, m[2]!.split('|').map((c) => c.trim()));
  return out;
}

describe('docs/errors.md', () => {
  it('has a row for every code declared in src/errors.ts, with a meaning and what the operator does', () => {
    const table = rows();
    for (const code of [...Object.keys(ErrorCodes), ...Object.keys(CaseErrorCodes)]) {
      const cells = table.get(code);
      assert.ok(cells, `${code} has a row in docs/errors.md`);
      assert.ok(cells.length >= 2 && cells.every((c) => c.length > 0), `${code}: every cell is filled (${JSON.stringify(cells)})`);
      assert.ok(cells.at(-1)!.length >= 8, `${code}: says what the operator does`);
    }
  });

  it('names only codes that exist in src/errors.ts', () => {
    const known = new Set(allCodes);
    for (const m of doc.matchAll(/\b((?:MG_ERR|E)_[A-Z][A-Z_]*)\b/g)) assert.ok(known.has(m[1]!), `${m[1]} (docs/errors.md) is declared in src/errors.ts`);
  });

  it('says retryable exactly where isRetryableCode does', () => {
    for (const [code, cells] of rows()) {
      if (!(code in ErrorCodes)) continue;
      assert.ok(cells[0] === 'yes' || cells[0] === 'no', `${code}: retryable column is yes or no, got ${cells[0]}`);
      assert.equal(cells[0] === 'yes', isRetryableCode(code), `${code}: docs say retryable ${cells[0]}, the code says ${isRetryableCode(code)}`);
    }
  });

  it('every code the source raises, sends or stores is declared (and so documented)', () => {
    const known = new Set(allCodes);
    const used = new Set<string>();
    for (const p of files('src')) {
      // Quoted code literals: MetaguardError('…'), wireError('…'), { code: '…' }, Lua wire_error('…').
      for (const m of read(p).matchAll(/['"`]((?:MG_ERR|E)_[A-Z][A-Z_]*[A-Z])['"`]/g)) used.add(m[1]!);
    }
    assert.ok(used.size >= 20, `found ${used.size} codes in src`);
    for (const c of used) assert.ok(known.has(c), `${c} is used in src but not declared in src/errors.ts (and docs/errors.md)`);
  });

  it('is linked from the README and the reference', () => {
    assert.match(read('README.md'), /\]\(docs\/errors\.md\)/);
    assert.match(read('docs/reference.md'), /\]\(errors\.md\)/);
  });
});
