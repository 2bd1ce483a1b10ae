import type { CaseResult } from '../core/protocol.js';
/**
 * Size limits on what a case produces. A case's output preview, error message and violation names are
 * user-controlled and travel to the parent thread, into a results frame and into reports: each is cut
 * to a fixed size with a note, so one case result stays under MAX_RESULT_BYTES whatever the code does
 * (a 30 MB error message used to make the results frame exceed the codec's limit and crash the daemon).
 *
 * The thread applies these limits before posting (a huge string is not cloned across threads), and
 * the parent applies them again to what it receives (the thread's realm is the user's to tamper with).
 */

/** Characters kept of an error message. */
export const MAX_MESSAGE_CHARS = 1000;
/** Characters kept of an output preview. */
export const MAX_OUTPUT_CHARS = 200;
/** Names kept per violation list, and characters kept per name. */
export const MAX_NAMES = 32;
export const MAX_NAME_CHARS = 120;
/** Characters kept of an endpoint's response body in an E_HTTP_* error (the client keeps 200 bytes). */
export const MAX_HTTP_BODY_CHARS = 400;
/** Characters kept of an error code (codes are short identifiers). */
export const MAX_CODE_CHARS = 40;
/** Upper bound of one result's JSON encoding with every field at its limit (UTF-16 worst case aside). */
export const MAX_RESULT_BYTES = 2 * (MAX_MESSAGE_CHARS + MAX_HTTP_BODY_CHARS + MAX_OUTPUT_CHARS + MAX_CODE_CHARS + 3 * MAX_NAMES * (MAX_NAME_CHARS + 3)) + 2 * 3 * MAX_NAMES * 12 + 256;

/** Cuts `s` to at most `max` characters, saying how much was cut. */
export function truncate(s: string, max: number): string {
  if (s.length <= max) return s;
  const note = ` …[truncated ${s.length - max} more chars]`;
  const keep = Math.max(0, max - note.length);
  // Do not split a surrogate pair.
  const end = keep > 0 && /[\uD800-\uDBFF]/.test(s[keep - 1]) ? keep - 1 : keep;
  return String.prototype.slice.call(s, 0, end) + note;
}

function names(list: unknown, field: string): string[] | undefined {
  if (!Array.isArray(list) || list.length === 0) return undefined;
  const out = list.slice(0, MAX_NAMES).map((n) => truncate(typeof n === 'string' ? n : String(n), MAX_NAME_CHARS));
  if (list.length > MAX_NAMES) out.push(`…[${list.length - MAX_NAMES} more ${field}]`);
  return out;
}

/**
 * A well-formed, bounded copy of a case result as a thread sent it, or null when it is not a result
 * at all. Only known fields are kept, each with its type checked.
 */
export function boundResult(raw: unknown): CaseResult | null {
  if (raw === null || typeof raw !== 'object') return null;
  const r = raw as Record<string, unknown>;
  if (!Number.isSafeInteger(r.index) || (r.index as number) < 0 || typeof r.passed !== 'boolean') return null;
  const durationMs = typeof r.durationMs === 'number' && Number.isFinite(r.durationMs) && r.durationMs >= 0 ? r.durationMs : 0;
  const out: CaseResult = { index: r.index as number, passed: r.passed, durationMs };
  if (r.error !== undefined) {
    const e = (r.error ?? {}) as Record<string, unknown>;
    const code = typeof e.code === 'string' && /^(E_|MG_ERR_)[A-Z0-9_]+$/.test(e.code) ? truncate(e.code, MAX_CODE_CHARS) : 'E_THROW';
    out.error = { code, message: truncate(typeof e.message === 'string' ? e.message : String(e.message), MAX_MESSAGE_CHARS) };
    // E_HTTP_*: the response status and the first bytes of its body.
    if (Number.isSafeInteger(e.status)) out.error.status = e.status as number;
    if (typeof e.body === 'string') out.error.body = truncate(e.body, MAX_HTTP_BODY_CHARS);
    out.passed = false;
  }
  const prop = names(r.propViolations, 'properties');
  const soft = names(r.softViolations, 'properties');
  const mr = names(r.mrViolations, 'relations');
  if (prop) out.propViolations = prop;
  if (soft) out.softViolations = soft;
  if (mr) out.mrViolations = mr;
  if (typeof r.output === 'string') out.output = truncate(r.output, MAX_OUTPUT_CHARS);
  const http = r.http as { calls?: unknown; ms?: unknown; status?: unknown } | undefined;
  if (http && typeof http === 'object' && Number.isSafeInteger(http.calls) && Array.isArray(http.ms) && Array.isArray(http.status)) {
    // One entry per call of the endpoint (bounded by the relations of the task); numbers only.
    const nums = (xs: unknown[]) => xs.slice(0, MAX_NAMES).map((x) => (typeof x === 'number' && Number.isFinite(x) ? x : 0));
    out.http = { calls: http.calls as number, ms: nums(http.ms), status: nums(http.status) };
  }
  return out;
}
