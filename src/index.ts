/** metaguard's programmatic API. */
export { defineTask } from './task/types.js';
export type { TaskSpec, Property, Relation, Solve } from './task/types.js';
export { evaluate } from './evaluate.js';
export type { EvaluateInput } from './evaluate.js';
export type { Report } from './reports/types.js';
export { wilsonInterval, newcombeInterval, newcombePairedInterval } from './statistics/index.js';
export { MetaguardError, ErrorCodes, CaseErrorCodes } from './errors.js';
export { startWorker, WorkerHandle } from './daemon/daemon.js';
export type { WorkerOptions } from './daemon/daemon.js';
export { createCodec } from './codec/index.js';
export type { Codec, CodecOptions } from './codec/index.js';
export { validateQueueConfig } from './queue/config.js';
export type { QueueConfig } from './queue/config.js';
export type { Backend } from './queue/types.js';
