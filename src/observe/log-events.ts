/**
 * Logs as a subscriber: the log lines of what a worker daemon or a coordinator observes (events.ts),
 * written by that worker's or coordinator's logger. Event names and fields are documented in
 * docs/reference.md ("Log events"); per-batch events are debug.
 */
import { observe } from './events.js';
import type { Logger } from './log.js';

/** Logs a worker daemon's case faults and batch events; returns the function that stops. */
export function logWorkerEvents(source: object, worker: string, logger: Logger): () => void {
  return observe(source, {
    'metaguard:case': (m) => {
      const code = m.result.error?.code;
      if (code !== 'E_TIMEOUT' && code !== 'E_OOM' && code !== 'E_CRASH') return;
      logger.warn(code === 'E_TIMEOUT' ? 'case_timeout' : code === 'E_OOM' ? 'case_oom' : 'case_crash', { worker, batch: m.batch, case_index: m.result.index, thread: m.slot, message: m.result.error!.message });
    },
    'metaguard:batch': (m) => {
      switch (m.kind) {
        case 'claimed':
          return logger.log('debug', 'batch_claimed', { worker: m.worker, batch: m.batch, attempt: m.attempt });
        case 'completed':
          return logger.log('debug', 'queue_completed', { worker: m.worker, batch: m.batch, cases: m.cases, seconds: Number(m.seconds.toFixed(3)), ...(m.frames > 1 ? { frames: m.frames } : {}) });
        case 'handed_back':
          return logger.info('queue_requeued', { worker: m.worker, batch: m.batch, code: m.code, reason: m.reason });
        case 'retry_later':
          return logger.warn('queue_requeued', { worker: m.worker, batch: m.batch, attempt: m.attempt, delay_ms: m.delayMs, code: m.code, reason: m.reason });
        case 'lease_lost':
          return logger.warn('queue_requeued', { worker: m.worker, batch: m.batch, message: 'lease lost; results will still be published and deduplicated' });
        case 'dead_lettered':
          return logger.warn('dead_lettered', { worker: m.worker, batch: m.batch, code: m.code, retryable: m.retryable, reason: m.reason });
        case 'decoded':
          return;
      }
    },
  });
}

/** Logs a queue coordinator's job events; returns the function that stops. */
export function logJobEvents(source: object, logger: Logger): () => void {
  return observe(source, {
    'metaguard:job': (m) => {
      switch (m.kind) {
        case 'dispatched':
          return logger.log('debug', 'queue_dispatched', { job: m.job, batches: m.batches, cases: m.cases });
        case 'batch_completed':
          return logger.log('debug', 'queue_completed', { job: m.job, batch: m.batch, worker: m.worker, cases: m.cases, ...(m.parts !== undefined ? { parts: m.parts } : {}) });
        case 'resent':
          return logger.warn('queue_requeued', { job: m.job, batches: m.batches, reason: m.reason });
        case 'reclaimed':
          return logger.warn('queue_requeued', { job: m.job, batches: m.batches });
        case 'dead_lettered':
          return logger.warn('dead_lettered', { job: m.job, batch: m.batch, code: m.code, retryable: m.retryable, reason: m.reason });
        case 'undecodable':
          return logger.warn('batch_rejected', { job: m.job, batch: m.batch, message: m.message });
        case 'forged':
          return logger.warn('forged_entry', {
            job: m.job,
            batch: m.batch,
            kind: m.entry,
            reason: m.reason,
            message: m.message,
            ...(m.entry === 'dead' ? { claimed_code: m.claimedCode, claimed_reason: m.claimedReason } : { worker: m.worker }),
          });
        case 'started':
        case 'batch_size':
          return;
      }
    },
  });
}

