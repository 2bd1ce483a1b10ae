/**
 * The Redis backend's Lua commands as files (src/queue/redis/commands/): every file is a known
 * command and every command has its file, includes resolve once each, bad includes are refused, and
 * every helper a command calls is defined (by an include) before the command uses it — Redis reports
 * a missing helper only when the path that calls it runs.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { assembleCommand, COMMAND_FILES, COMMANDS } from '../src/queue/redis/scripts.ts';

const dir = new URL('../src/queue/redis/commands/', import.meta.url);

/** Lua source without its comments (block comments, then line comments; strings here hold no `--`). */
function withoutComments(lua: string): string {
  return lua.replace(/--\[\[[^]*?\]\]/g, '').replace(/--.*$/gm, '');
}

describe('redis commands (.lua files)', () => {
  it('every command file is a known command, and every command has its file', () => {
    const files = readdirSync(dir).filter((f) => f.endsWith('.lua')).map((f) => f.slice(0, -4)).sort();
    assert.deepEqual(files, Object.values(COMMAND_FILES).sort());
    assert.deepEqual(Object.keys(COMMANDS).sort(), Object.keys(COMMAND_FILES).sort());
  });

  it('includes are inlined once each, and no @include line is left', () => {
    for (const [name, lua] of Object.entries(COMMANDS)) {
      assert.doesNotMatch(lua, /^--- @include/m, `${name} still has an @include`);
      const keys = lua.match(/^local P = ARGV\[1\]$/gm) ?? [];
      assert.equal(keys.length, 1, `${name} defines the keys once`);
    }
    // deadLetter includes keys, time and bump itself: release, which includes them too, gets each once.
    for (const fn of ['now_ms', 'bump', 'dead_letter']) assert.equal(COMMANDS.mgRelease.split(`local function ${fn}(`).length - 1, 1, fn);
  });

  it('every helper a command calls is defined before its first use', () => {
    const includes = readdirSync(new URL('includes/', dir)).map((f) => readFileSync(new URL(`includes/${f}`, dir), 'utf8'));
    const helpers = includes.flatMap((text) => [...text.matchAll(/^local function (\w+)\(/gm)].map((m) => m[1]!));
    assert.ok(helpers.length >= 6, helpers.join(', '));
    for (const [name, source] of Object.entries(COMMANDS)) {
      const lua = withoutComments(source);
      for (const fn of helpers) {
        const defined = lua.indexOf(`local function ${fn}(`);
        const used = lua.search(new RegExp(`(?<!function )\\b${fn}\\(`));
        if (used >= 0) assert.ok(defined >= 0 && defined < used, `${name} calls ${fn}() without including its definition first`);
      }
      for (const key of ['INFLIGHT', 'OWNER', 'DELAYED', 'COUNTERS', 'DEAD', 'DEADIDX', 'STRIKES', 'WORKERS', 'PENDING', 'PRIOS', 'DEADS']) {
        const declared = lua.search(new RegExp(`^local [A-Z, ]*\\b${key}\\b[A-Z, ]* =`, 'm'));
        const used = lua.search(new RegExp(`\\b${key}\\b`));
        if (used >= 0) assert.ok(declared >= 0 && declared <= used, `${name} uses ${key} before declaring it`);
      }
    }
  });

  it('refuses an include outside includes/, a circular include, and a missing file', () => {
    const files: Record<string, string> = {
      'a.lua': '--- @include "includes/x"\nreturn 1\n',
      'b.lua': '--- @include "../etc/passwd"\n',
      'includes/x.lua': '--- @include "includes/y"\nlocal x = 1\n',
      'includes/y.lua': '--- @include "includes/x"\nlocal y = 2\n',
      'c.lua': '--- @include "includes/y"\n--- @include "includes/z"\n',
      'includes/z.lua': 'local z = 3\n',
    };
    const read = (path: string) => {
      const text = files[path];
      if (text === undefined) throw new Error(`no file ${path}`);
      return text;
    };
    assert.throws(() => assembleCommand('a', read), (err: { code?: string; message?: string }) => err.code === 'MG_ERR_BACKEND' && /circular/.test(err.message ?? ''));
    assert.throws(() => assembleCommand('b', read), (err: { code?: string; message?: string }) => err.code === 'MG_ERR_BACKEND' && /under includes/.test(err.message ?? ''));
    assert.throws(() => assembleCommand('missing', read), /no file missing\.lua/);
    files['includes/y.lua'] = 'local y = 2\n';
    const c = assembleCommand('c', read);
    assert.match(c, /local y = 2\n[^]*local z = 3/);
  });
});
