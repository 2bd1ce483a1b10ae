/** Flag parsing against an options schema, with one-line errors that name the flag. */
import { parseArgs } from 'node:util';
import { MetaguardError } from '../errors.js';
import { flagName, type Schema } from '../options/schema.js';
import { nearest } from '../util/text.js';

export interface ParsedArgs {
  /** Flag values keyed by schema key (still strings; the schema coerces them). */
  flags: Record<string, unknown>;
  positionals: string[];
  help: boolean;
}

type OptionSpec = { type: 'string' | 'boolean'; short?: string };

/** A token that is a negative number (`-0.01`, `-5`, `-1e-3`), a value rather than a flag. */
const NEGATIVE_NUMBER = /^-(\d|\.\d)/;

/**
 * Joins `--flag -0.01` into `--flag=-0.01` for flags that take a value, so negative numbers are
 * values (node:util parseArgs would read `-0.01` as short options).
 */
function joinNegativeValues(argv: string[], options: Record<string, OptionSpec>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const next = argv[i + 1];
    if (a.startsWith('--') && !a.includes('=') && options[a.slice(2)]?.type === 'string' && next !== undefined && NEGATIVE_NUMBER.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

export function parseFlags(argv: string[], schema: Schema, extra: Record<string, OptionSpec> = {}): ParsedArgs {
  const options: Record<string, OptionSpec> = { help: { type: 'boolean', short: 'h' }, ...extra };
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
    parsed = parseArgs({ args: joinNegativeValues(argv, options), options, strict: true, allowPositionals: true });
  } catch (err) {
    const e = err as { code?: string; message: string };
    const m = /'(-{1,2}[^']+)'/.exec(e.message);
    const flag = (m?.[1] ?? 'flag').split(' ')[0]!;
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const known = Object.keys(options).filter((o) => !o.includes('_')).map((o) => `--${o}`);
      const guess = nearest(flag.split('=')[0]!, known);
      throw new MetaguardError('MG_ERR_UNKNOWN_OPTION', `${flag}: unknown flag (${guess ? `did you mean ${guess}? ` : ''}see --help)`, { field: flag });
    }
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const takesValue = options[flag.replace(/^-+/, '').split(/[ =]/)[0]!]?.type === 'string';
      throw new MetaguardError('MG_ERR_INVALID_OPTION', takesValue ? `${flag}: needs a value` : `${flag}: takes no value (it is a switch)`, { field: flag });
    }
    throw new MetaguardError('MG_ERR_INVALID_OPTION', e.message.split('\n')[0]!);
  }
  const flags: Record<string, unknown> = {};
  for (const [flag, value] of Object.entries(parsed.values)) {
    const key = keyOf.get(flag);
    if (key !== undefined) flags[key] = value;
    else if (flag !== 'help') flags[flag] = value;
  }
  return { flags, positionals: parsed.positionals, help: parsed.values.help === true };
}
