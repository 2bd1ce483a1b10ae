/**
 * The Lua commands of the Redis backend, read once (at the first import of this module) from the
 * `.lua` files beside it in `commands/`, with their shared includes resolved.
 *
 * Layout (like BullMQ's commands/): one file per command, `commands/<name>.lua`, and shared pieces in
 * `commands/includes/`. A line `--- @include "includes/<piece>"` is replaced by that file, once per
 * command (a piece included again, directly or through another piece, is not repeated), so a piece
 * may include what it depends on. The build copies the files into dist/ next to the compiled module.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MetaguardError } from '../../errors.js';

/** Command name as ioredis defines it -> its file under commands/. */
export const COMMAND_FILES = {
  mgEnqueue: 'enqueue',
  mgClaim: 'claim',
  mgRenew: 'renew',
  mgComplete: 'complete',
  mgRelease: 'release',
  mgWithdraw: 'withdraw',
  mgDeadLetter: 'deadLetter',
  mgMissing: 'missing',
  mgReclaim: 'reclaim',
  mgHeartbeat: 'heartbeat',
  mgActiveWorkers: 'activeWorkers',
  mgRetryDead: 'retryDead',
  mgPurgeDead: 'purgeDead',
  mgStats: 'stats',
  mgProgress: 'progress',
  mgListProgress: 'listProgress',
  mgRequestCancel: 'requestCancel',
  mgPriorityCounts: 'priorityCounts',
} as const;

export type CommandName = keyof typeof COMMAND_FILES;

/** Keys every command receives, in this order (declared so Cluster routes by them; see includes/keys.lua). */
export const STATIC_KEYS = ['inflight', 'owner', 'delayed', 'counters', 'dead', 'deadidx', 'strikes', 'workers', 'pending:critical', 'pending:high', 'pending:normal', 'pending:low'] as const;

const INCLUDE = /^--- @include "([^"]*)"[ \t]*$/gm;
const PIECE = /^includes\/[A-Za-z0-9_]+$/;

/**
 * The source of command `file` (a name under commands/, without `.lua`) with its includes resolved.
 * `read` returns a file's text by its path under commands/ (e.g. `includes/keys.lua`).
 */
export function assembleCommand(file: string, read: (path: string) => string): string {
  const included = new Set<string>();
  const expand = (path: string, stack: readonly string[]): string => {
    const text = read(`${path}.lua`);
    return text.replace(INCLUDE, (_line, piece: string) => {
      if (!PIECE.test(piece)) throw new MetaguardError('MG_ERR_BACKEND', `redis command ${path}.lua: @include "${piece}" must name a file under includes/`);
      if (stack.includes(piece)) throw new MetaguardError('MG_ERR_BACKEND', `redis command ${path}.lua: @include "${piece}" is circular (${[...stack, piece].join(' -> ')})`);
      if (included.has(piece)) return `-- (${piece} already included)`;
      included.add(piece);
      return `-- ${piece}\n${expand(piece, [...stack, piece]).trimEnd()}`;
    });
  };
  return expand(file, [file]);
}

function readCommandFile(path: string): string {
  const url = new URL(`./commands/${path}`, import.meta.url);
  try {
    return readFileSync(url, 'utf8');
  } catch (err) {
    throw new MetaguardError('MG_ERR_BACKEND', `redis command file ${fileURLToPath(url)} cannot be read (a build without its .lua files? run npm run build): ${(err as Error).message}`, { cause: err });
  }
}

function loadCommands(): Record<CommandName, string> {
  const out = {} as Record<CommandName, string>;
  for (const [name, file] of Object.entries(COMMAND_FILES) as [CommandName, string][]) out[name] = assembleCommand(file, readCommandFile);
  return out;
}

/** Every command's Lua source, read once. */
export const COMMANDS: Readonly<Record<CommandName, string>> = loadCommands();
