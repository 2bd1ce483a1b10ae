/**
 * What a case pool observes while it runs a chunk: every case that finished, every thread replaced,
 * every heap sample — given to the chunk's callbacks and, when the chunk has a `context`, published
 * on the diagnostics channels (src/observe/events.ts) tagged with it, so that the worker or
 * coordinator that ran the chunk takes its own.
 */
import { caseChannel, threadChannel, type CaseContext } from '../observe/events.js';
import type { CaseResult } from '../core/protocol.js';

/**
 * What a chunk's run observed. `slot` is the thread's slot in the pool (0..threads-1):
 * a thread that dies hands its slot to its replacement, so per-thread series stay bounded.
 */
export interface ChunkEvents {
  /** Whose chunk this is: with it, the pool also publishes these events. */
  context?: CaseContext;
  onResult?(result: CaseResult, slot: number): void;
  onRestart?(reason: 'timeout' | 'oom' | 'crash', slot: number): void;
  onHeap?(bytes: number, slot: number): void;
}

/** `events`, also publishing what it observes when the chunk has a context. */
export function publishing(events: ChunkEvents): ChunkEvents {
  const context = events.context;
  if (!context) return events;
  const { onResult, onRestart, onHeap } = events;
  return {
    context,
    onResult(result, slot) {
      onResult?.(result, slot);
      if (caseChannel.hasSubscribers) caseChannel.publish({ source: context.source, role: context.role, batch: context.batch, slot, result });
    },
    onRestart(reason, slot) {
      onRestart?.(reason, slot);
      if (threadChannel.hasSubscribers) threadChannel.publish({ source: context.source, slot, kind: 'restart', reason });
    },
    onHeap(bytes, slot) {
      onHeap?.(bytes, slot);
      if (threadChannel.hasSubscribers) threadChannel.publish({ source: context.source, slot, kind: 'heap', bytes });
    },
  };
}
