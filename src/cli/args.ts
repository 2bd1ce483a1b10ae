/** Flag parsing against an options schema, with one-line errors that name the flag. */
import { parseArgs } from 'node:util';
import { MetaguardError } from '../errors.js';
import { flagName, type Schema } from '../options/schema.js';

export interface ParsedArgs {
  /** Flag values keyed by schema key (still strings; the schema coerces them). */
  flags: Record<string, unknown>;
  positionals: string[];
  help: boolean;
}

export function parseFlags(argv: string[], schema: Schema, extra: Record<string, { type: 'string' | 'boolean' }> = {}): ParsedArgs {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' }, ...extra };
  const keyOf = new Map<string, string>();
  for (const [key, field] of Object.entries(schema)) {
    const flag = flagName(key);
    options[flag] = { type: field.type === 'bool' ? 'boolean' : 'string' };
    keyOf.set(flag, key);
    // Accept --snake_case spellings too (the Python tool's documented flags use dashes, its config keys underscores).
    const snake = flag.replace(/-/g, '_');
    if (snake !== flag) {
      options[snake] = options[flag];
      keyOf.set(snake, key);
    }
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (err) {
    const e = err as { code?: string; message: string };
    const m = /'(-{1,2}[^']+)'/.exec(e.message);
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new MetaguardError('MG_ERR_UNKNOWN_OPTION', `${m?.[1] ?? 'flag'}: unknown flag (see --help)`, { field: m?.[1] });
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') throw new MetaguardError('MG_ERR_INVALID_OPTION', `${m?.[1] ?? 'flag'}: needs a value`, { field: m?.[1] });
    throw new MetaguardError('MG_ERR_INVALID_OPTION', e.message.split('\n')[0]);
  }
  const flags: Record<string, unknown> = {};
  for (const [flag, value] of Object.entries(parsed.values)) {
    const key = keyOf.get(flag);
    if (key !== undefined) flags[key] = value;
    else if (flag !== 'help') flags[flag] = value;
  }
  return { flags, positionals: parsed.positionals, help: parsed.values.help === true };
}
