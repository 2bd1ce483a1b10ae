/**
 * The environment case threads (and case processes) see. User code must not read the daemon's
 * secrets: `METAGUARD_QUEUE_CONFIG` holds the broker password and the HMAC key, and operators keep
 * other credentials in the same environment file. Case threads get a copy of the environment
 * without any `METAGUARD_*` variable and without the variables `METAGUARD_HIDE_ENV` names.
 */

/**
 * Names (or prefixes ending in `*`) separated by commas or whitespace, e.g. `AWS_*,PGPASSWORD`.
 * Invalid entries are rejected when the option is validated (see `parseHideEnv`).
 */
export const HIDE_ENV_VARIABLE = 'METAGUARD_HIDE_ENV';

const entryPattern = /^[A-Za-z_][A-Za-z0-9_]*\*?$/;

/** Parses a METAGUARD_HIDE_ENV value; returns the bad entry's reason instead of throwing. */
export function parseHideEnv(value: string | undefined): { patterns: string[] } | { error: string } {
  const patterns = (value ?? '').split(/[\s,]+/).filter(Boolean);
  for (const p of patterns) {
    if (!entryPattern.test(p)) return { error: `${JSON.stringify(p)} is not a variable name or a NAME_PREFIX* pattern` };
  }
  return { patterns };
}

function hidden(name: string, patterns: readonly string[]): boolean {
  if (name.toUpperCase().startsWith('METAGUARD_')) return true;
  for (const p of patterns) {
    if (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : name === p) return true;
  }
  return false;
}

/** A scrubbed copy of `env` for user code. */
export function caseEnvironment(env: NodeJS.ProcessEnv, hide: readonly string[] = []): Record<string, string> {
  const parsed = parseHideEnv(env[HIDE_ENV_VARIABLE]);
  const patterns = [...hide, ...('patterns' in parsed ? parsed.patterns : [])];
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && !hidden(name, patterns)) out[name] = value;
  }
  return out;
}
