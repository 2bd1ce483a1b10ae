/**
 * Capabilities a backend declares (src/queue/types.ts): what each one means in one line, the test
 * callers use before an optional operation (`can`), and the check that a declaration matches the
 * methods a backend has (`capabilityMismatches`, run by the conformance suite on every backend).
 */
import type { BackendCapabilities, CapabilityMethods, QueueAdminCapabilities, WorkQueueCapabilities } from './types.js';

export type Concern = keyof BackendCapabilities;
export type CapabilityName<C extends Concern = Concern> = C extends 'queue' ? keyof WorkQueueCapabilities : keyof QueueAdminCapabilities;
export type OptionalCapability = keyof CapabilityMethods;

/** One line per capability: what a backend that declares it promises. */
export const capabilityDescriptions: { [C in Concern]: Record<CapabilityName<C>, string> } = {
  queue: {
    leases: 'per-batch leases on the backend clock that expire unless renewed, reclaimed by reclaimExpired',
    circuitBreaker: 'a worker that lost circuit_breaker_threshold leases may not claim for heartbeat_timeout',
    strictPriority: 'strict_priority orders claims across the whole queue',
    weightedPriority: 'queue_weights pick among the non-empty priorities of the whole queue',
    fifo: 'claims follow enqueue order within a priority, queue-wide',
    idempotentEnqueue: 'enqueueing a batch id already pending, delayed or in flight adds nothing',
    lostBatchDetection: 'missingBatches names batches lost with the backend state',
    wakeOnWork: 'waitForWork wakes an idle worker when work is enqueued',
  },
  admin: {
    perPriorityStats: 'stats().pending is split per priority',
    pendingExcludesClaimed: 'stats().pending counts only batches waiting to be claimed',
    delayedStats: 'stats().delayed counts a released batch as soon as releaseBatch returns',
    withdraw: 'withdrawJob removes a stopped job\'s batches, manifest and results',
    preflight: 'preflight reports configuration problems at start',
    progress: 'progress records and cancellation requests for the dashboard',
    priorityCounts: 'priorityCounts gives in-flight and dead-lettered batches per priority',
    benchRecords: 'the last bench sweep is stored on the queue',
  },
};

/** The concern each optional capability belongs to. */
interface ConcernOf {
  lostBatchDetection: 'queue';
  wakeOnWork: 'queue';
  withdraw: 'admin';
  preflight: 'admin';
  progress: 'admin';
  priorityCounts: 'admin';
  benchRecords: 'admin';
}

/** The concern of each optional capability, and the methods it brings. */
const optional: { [K in OptionalCapability]: { concern: ConcernOf[K]; methods: readonly (keyof CapabilityMethods[K])[] } } = {
  lostBatchDetection: { concern: 'queue', methods: ['missingBatches'] },
  wakeOnWork: { concern: 'queue', methods: ['waitForWork'] },
  withdraw: { concern: 'admin', methods: ['withdrawJob'] },
  preflight: { concern: 'admin', methods: ['preflight'] },
  progress: { concern: 'admin', methods: ['publishProgress', 'listProgress', 'removeProgress', 'requestCancel'] },
  priorityCounts: { concern: 'admin', methods: ['priorityCounts'] },
  benchRecords: { concern: 'admin', methods: ['putBenchRecord', 'getBenchRecord'] },
};

type Declares<C extends Concern> = { readonly capabilities: { readonly [P in C]: BackendCapabilities[P] } };

/**
 * True when `backend` declares the optional capability `cap`; its methods are then typed as present.
 * (The conformance suite checks, per backend, that a declared capability comes with its methods.)
 */
export function can<K extends OptionalCapability, B extends Declares<ConcernOf[K]>>(backend: B, cap: K): backend is B & CapabilityMethods[K] {
  const { concern } = optional[cap];
  return (backend.capabilities as unknown as Record<Concern, Record<string, boolean>>)[concern][cap] === true;
}

/** True when `caps` declares `concern.name` (the semantic capabilities, which bring no methods). */
export function declares<C extends Concern>(caps: BackendCapabilities, concern: C, name: CapabilityName<C>): boolean {
  return (caps[concern] as unknown as Record<string, boolean>)[name] === true;
}

/** One line: why a test that needs `concern.name` does not run on a backend of `kind`. */
export function missingCapabilityReason<C extends Concern>(kind: string, concern: C, name: CapabilityName<C>): string {
  const description = (capabilityDescriptions[concern] as Record<string, string>)[name];
  return `${kind} does not declare ${concern}.${String(name)} (${description})`;
}

/**
 * Where a backend's declaration and its methods disagree: a declared optional capability whose
 * methods are missing, or methods present without the capability declared (callers would never use
 * them). Also every capability of the schema must be declared, true or false. [] when consistent.
 */
export function capabilityMismatches(backend: { readonly capabilities: BackendCapabilities } & Partial<Record<string, unknown>>): string[] {
  const out: string[] = [];
  for (const concern of Object.keys(capabilityDescriptions) as Concern[]) {
    const declared = (backend.capabilities?.[concern] ?? {}) as unknown as Record<string, unknown>;
    for (const name of Object.keys(capabilityDescriptions[concern])) {
      if (typeof declared[name] !== 'boolean') out.push(`${concern}.${name} is not declared (true or false)`);
    }
    for (const name of Object.keys(declared)) {
      if (!(name in capabilityDescriptions[concern])) out.push(`${concern}.${name} is not a known capability`);
    }
  }
  for (const [cap, { concern, methods }] of Object.entries(optional) as [OptionalCapability, (typeof optional)[OptionalCapability]][]) {
    const on = (backend.capabilities?.[concern] as unknown as Record<string, unknown> | undefined)?.[cap] === true;
    for (const m of methods as readonly string[]) {
      const has = typeof backend[m] === 'function';
      if (on && !has) out.push(`${concern}.${cap} is declared but ${m}() is missing`);
      if (!on && has) out.push(`${m}() is there but ${concern}.${cap} is not declared`);
    }
  }
  return out;
}
