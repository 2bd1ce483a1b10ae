/**
 * Gating policies: a TOML file with a `[gating]` table using the evaluate flags' keys in snake_case
 * (`min_delta`, `min_pass_rate`, `violation_cap`, `alpha`, `ci_method`, `bootstrap_samples`), or a
 * preset `superiority:margin=X` (min_delta = X) / `noninferiority:margin=X` (min_delta = −X).
 */
import { readFileSync, existsSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { MetaguardError } from '../errors.js';
import { gatingKeys } from './evaluate.js';

const snake = (k: string) => k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());
const camelOf = new Map<string, string>(gatingKeys.map((k) => [snake(k), k]));

function invalidPolicy(where: string, reason: string): MetaguardError {
  return new MetaguardError('MG_ERR_INVALID_POLICY', `policy ${where}: ${reason}`, { field: 'policy' });
}

function preset(spec: string): Record<string, unknown> | undefined {
  const m = /^(superiority|noninferiority):margin=(.+)$/.exec(spec);
  if (!m) return undefined;
  const margin = Number(m[2]);
  if (!Number.isFinite(margin) || margin < 0 || margin > 1) throw invalidPolicy(spec, `margin must be a number in [0, 1], got ${JSON.stringify(m[2])}`);
  return { minDelta: m[1] === 'superiority' ? margin : -margin };
}

/** Returns the policy's values keyed like the evaluate schema (camelCase), still to be validated. */
export function loadPolicy(spec: string): Record<string, unknown> {
  const fromPreset = preset(spec);
  if (fromPreset) return fromPreset;
  if (/^(superiority|noninferiority)\b/.test(spec)) throw invalidPolicy(spec, 'a preset is written superiority:margin=X or noninferiority:margin=X');
  if (!existsSync(spec)) throw new MetaguardError('MG_ERR_FILE_NOT_FOUND', `policy file not found: ${spec}`, { field: 'policy' });
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(readFileSync(spec, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    const first = ((err as Error).message ?? String(err)).split('\n')[0];
    throw invalidPolicy(spec, `malformed TOML: ${first}`);
  }
  for (const key of ['dispatcher', 'queue', 'metrics', 'logging']) {
    if (key in doc) throw invalidPolicy(spec, `[${key}] is a config-file table, not part of a policy: pass this file as --config FILE (it may hold [gating] too)`);
  }
  const gating = doc.gating;
  if (gating === undefined || gating === null || typeof gating !== 'object' || Array.isArray(gating)) {
    throw invalidPolicy(spec, 'needs a [gating] table');
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(gating)) {
    const camel = camelOf.get(key);
    if (!camel) throw invalidPolicy(spec, `unknown key gating.${key} (known: ${[...camelOf.keys()].join(', ')})`);
    out[camel] = value;
  }
  return out;
}
