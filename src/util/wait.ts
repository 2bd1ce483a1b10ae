import type { EventEmitter } from 'node:events';

/**
 * Resolves when `emitter` emits any of `events`, or after `ms`, whichever comes first, and removes
 * its listeners either way (the blocking reads of the in-process backends).
 */
export function waitForAny(emitter: EventEmitter, events: string[], ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      for (const e of events) emitter.off(e, done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const e of events) emitter.on(e, done);
  });
}
