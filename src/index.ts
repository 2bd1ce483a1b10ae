/** metaguard's programmatic API (SPEC §9). */
export { defineTask } from './spec/types.js';
export type { TaskSpec, Property, Relation, Solve } from './spec/types.js';
export { evaluate } from './evaluate.js';
export type { EvaluateInput } from './evaluate.js';
export type { Report } from './reports/types.js';
export { wilsonInterval, newcombeInterval, newcombePairedInterval } from './statistics/index.js';
export { MetaguardError, ErrorCodes, CaseErrorCodes } from './errors.js';
