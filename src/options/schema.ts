/**
 * One schema per command: every option's type, default, bounds and description in one place. Values
 * come from flags, then `METAGUARD_*` environment variables, then a config file, then defaults
 * (flags > env > file > defaults); they are
 * validated once and frozen. Messages name the field as the user wrote it (`--n`, `METAGUARD_N`).
 */
import { invalidOption, MetaguardError } from '../errors.js';

export type FieldType = 'int' | 'number' | 'string' | 'bool' | 'enum' | 'json';

export interface Field {
  type: FieldType;
  description: string;
  default?: unknown;
  min?: number;
  max?: number;
  /** Lower bound excluded (e.g. a time limit must be > 0). */
  exclusiveMin?: boolean;
  values?: readonly string[];
  /** Leave out of the environment (e.g. `--json` of evaluate). */
  noEnv?: boolean;
  /** Environment variable to read instead of METAGUARD_<KEY> (e.g. METAGUARD_DASHBOARD_TOKEN). */
  env?: string;
  /** Short help placeholder, e.g. FILE. */
  placeholder?: string;
}

export type Schema = Record<string, Field>;

/** The value one field resolves to. A `json` field is checked by its own validator later, hence unknown. */
export type ValueOf<F> = F extends { type: 'int' | 'number' }
  ? number
  : F extends { type: 'bool' }
    ? boolean
    : F extends { type: 'enum'; values: readonly (infer V)[] }
      ? V
      : F extends { type: 'json' }
        ? unknown
        : string;

type WithDefault<S> = { [K in keyof S]: S[K] extends { default: NonNullable<unknown> } ? K : never }[keyof S];

/**
 * The options a schema resolves to, inferred from it (no hand-written mirror): a field with a default
 * is always there, the others are optional. Write schemas `{ … } as const satisfies Schema`.
 */
export type OptionsOf<S extends Schema> = {
  -readonly [K in keyof S as K extends WithDefault<S> ? K : never]: ValueOf<S[K]>;
} & {
  -readonly [K in keyof S as K extends WithDefault<S> ? never : K]?: ValueOf<S[K]>;
};

/** `timeoutS` → `timeout-s`. */
export const flagName = (key: string) => key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
/** `timeoutS` → `METAGUARD_TIMEOUT_S`. */
export const envName = (key: string) => 'METAGUARD_' + key.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();

/** Coerces and checks one value; `field` is how the user named it. */
export function coerce(field: string, spec: Field, raw: unknown): unknown {
  const fail = (reason: string) => invalidOption(field, reason);
  switch (spec.type) {
    case 'bool': {
      if (typeof raw === 'boolean') return raw;
      const s = String(raw).trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(s)) return true;
      if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
      throw fail(`must be true or false, got ${JSON.stringify(raw)}`);
    }
    case 'int':
    case 'number': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
      if (!Number.isFinite(n)) throw fail(`must be a number, got ${JSON.stringify(raw)}`);
      if (spec.type === 'int' && !Number.isInteger(n)) throw fail(`must be an integer, got ${JSON.stringify(raw)}`);
      if (spec.min !== undefined && (spec.exclusiveMin ? n <= spec.min : n < spec.min)) {
        throw fail(`must be ${spec.exclusiveMin ? 'greater than' : 'at least'} ${spec.min}, got ${n}`);
      }
      if (spec.max !== undefined && n > spec.max) throw fail(`must be at most ${spec.max}, got ${n}`);
      return n;
    }
    case 'enum': {
      const s = String(raw);
      if (!spec.values!.includes(s)) throw fail(`must be one of ${spec.values!.join(', ')}; got ${JSON.stringify(raw)}`);
      return s;
    }
    case 'json': {
      if (typeof raw !== 'string') return raw;
      try {
        return JSON.parse(raw);
      } catch (err) {
        throw fail(`is not valid JSON (${(err as Error).message})`);
      }
    }
    case 'string': {
      if (typeof raw !== 'string' || raw.length === 0) throw fail('must be a non-empty string');
      return raw;
    }
  }
}

export interface Sources {
  /** Values from flags, keyed by schema key. */
  flags?: Record<string, unknown>;
  /** Values given programmatically, keyed by schema key (rank like flags). */
  values?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** Values from a config file (`--config`, a policy), ranked between defaults and the environment. */
  file?: Record<string, unknown>;
  fileName?: string;
  /**
   * A gating policy (`--policy FILE|PRESET`), chosen for this run: ranks above the environment and
   * below flags. `where` names a key for messages (`policy p.toml: gating.min_delta`).
   */
  policy?: { values: Record<string, unknown>; where(key: string): string };
  /** How a key is written in the file, for messages (e.g. `gating.min_pass_rate`). */
  fileKey?(key: string): string;
}

/** Resolves every field of `schema` from its sources; unknown keys in `values` are an error. */
export function resolveOptions<S extends Schema, T = OptionsOf<S>>(schema: S, sources: Sources): Readonly<T> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(sources.values ?? {})) {
    if (!(key in schema)) throw new MetaguardError('MG_ERR_UNKNOWN_OPTION', `${key}: unknown option`, { field: key });
  }
  for (const [key, spec] of Object.entries(schema)) {
    let value: unknown = spec.default;
    const fromFile = sources.file?.[key];
    if (fromFile !== undefined) {
      const where = sources.fileName !== undefined ? `${sources.fileName}: ${sources.fileKey?.(key) ?? key}` : (sources.fileKey?.(key) ?? `config: ${key}`);
      value = coerce(where, spec, fromFile);
    }
    const envVar = spec.env ?? envName(key);
    const env = spec.noEnv ? undefined : sources.env?.[envVar];
    if (env !== undefined && env !== '') value = coerce(envVar, spec, env);
    const fromPolicy = sources.policy?.values[key];
    if (fromPolicy !== undefined) value = coerce(sources.policy!.where(key), spec, fromPolicy);
    const flag = sources.flags?.[key];
    if (flag !== undefined) value = coerce(`--${flagName(key)}`, spec, flag);
    const given = sources.values?.[key];
    if (given !== undefined) value = coerce(key, spec, given);
    if (value !== undefined) out[key] = value;
  }
  return Object.freeze(out) as Readonly<T>;
}

/** Help text for a schema, one option a line. */
export function describeOptions(schema: Schema): string {
  const rows = Object.entries(schema).map(([key, f]) => {
    const arg = f.type === 'bool' ? '' : ` ${f.placeholder ?? (f.type === 'enum' ? f.values!.join('|') : f.type === 'json' ? 'JSON' : f.type.toUpperCase())}`;
    const def = f.default !== undefined && f.type !== 'bool' ? ` (default ${typeof f.default === 'object' ? JSON.stringify(f.default) : String(f.default)})` : '';
    return [`  --${flagName(key)}${arg}`, `${f.description}${def}${f.noEnv ? '' : ` [${f.env ?? envName(key)}]`}`];
  });
  const width = Math.min(40, Math.max(...rows.map((r) => r[0].length)) + 2);
  return rows.map(([l, r]) => (l.length >= width ? `${l}\n${' '.repeat(width)}${r}` : l.padEnd(width) + r)).join('\n');
}
