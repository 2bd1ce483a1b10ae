/** metaguard's programmatic API. */
export { defineTask } from './task/types.js';
export type { TaskSpec, Property, Relation, Solve } from './task/types.js';
export { evaluate } from './evaluate.js';
export type { EvaluateInput } from './evaluate.js';
export type { Report } from './reports/types.js';
export { wilsonInterval, newcombeInterval, newcombePairedInterval } from './statistics/index.js';
export { MetaguardError, ErrorCodes, CaseErrorCodes } from './errors.js';
export { startWorker, DaemonHandle } from './daemon/daemon.js';
export type { DaemonOptions } from './daemon/daemon.js';
/** @deprecated the worker daemon's handle is `DaemonHandle` (a "worker" is also a thread). */
export { DaemonHandle as WorkerHandle } from './daemon/daemon.js';
/** @deprecated use `DaemonOptions`. */
export type { DaemonOptions as WorkerOptions } from './daemon/daemon.js';
export { createCodec } from './codec/index.js';
export type { Codec, CodecOptions } from './codec/index.js';
export { validateQueueConfig } from './options/queue.js';
export type { QueueConfig } from './options/queue.js';
export type { Backend, BackendCapabilities, JobStore, QueueAdmin, WorkerRegistry, WorkQueue } from './queue/types.js';
