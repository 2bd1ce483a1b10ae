/**
 * What a task or implementation module gets from `import … from 'metaguard'` when it runs in a case
 * thread or a case process (src/task/self-resolve.ts): the pieces such a module uses, without the
 * rest of the package. The full entry (src/index.ts) loads the daemon, the queue backends and the
 * native codec; a case process runs under Node's permission model, which refuses native addons, so
 * a task that imported it could not load there.
 */
export { defineTask } from './task/types.js';
export type { TaskSpec, Property, Relation, Solve } from './task/types.js';
export { wilsonInterval, newcombeInterval, newcombePairedInterval } from './statistics/index.js';
export { MetaguardError, ErrorCodes, CaseErrorCodes } from './errors.js';
