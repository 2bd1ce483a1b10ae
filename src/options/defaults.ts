/**
 * Defaults that more than one schema shares, and that the programmatic APIs taking the same settings
 * (case pools, the worker daemon) fall back to: each is written here once.
 */
import type { Priority } from '../core/protocol.js';

/** Time limit of one case, seconds (`--timeout-s`, the worker's `--default-timeout-s`). */
export const CASE_TIMEOUT_S = 2;
/** Heap limit of each case thread, MiB (`--mem-mb`, the worker's `--default-mem-mb`). */
export const CASE_MEM_MB = 512;
/** Weights of weighted priority claiming (`queue_weights`); a config that names some priorities keeps these for the others. */
export const QUEUE_WEIGHTS: Readonly<Record<Priority, number>> = Object.freeze({ critical: 6, high: 3, normal: 2, low: 1 });
