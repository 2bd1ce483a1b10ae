/**
 * The capability check the conformance suite runs on every backend, and the guard callers use before
 * an optional operation, on hand-made declarations (pure logic: the real backends are checked in
 * test/backend-conformance.test.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { can, capabilityDescriptions, capabilityMismatches, missingCapabilityReason } from '../src/queue/capabilities.ts';
import type { BackendCapabilities } from '../src/queue/types.ts';

function all(value: boolean): BackendCapabilities {
  const pick = (concern: keyof BackendCapabilities) => Object.fromEntries(Object.keys(capabilityDescriptions[concern]).map((k) => [k, value]));
  return { queue: pick('queue'), admin: pick('admin') } as unknown as BackendCapabilities;
}

describe('backend capabilities', () => {
  it('a declaration without optional operations and without methods is consistent', () => {
    assert.deepEqual(capabilityMismatches({ capabilities: all(false) }), []);
  });

  it('reports a declared capability whose methods are missing, and methods whose capability is not declared', () => {
    const caps = all(false);
    const declared = { ...caps, admin: { ...caps.admin, withdraw: true } };
    assert.deepEqual(capabilityMismatches({ capabilities: declared }), ['admin.withdraw is declared but withdrawJob() is missing']);
    assert.deepEqual(capabilityMismatches({ capabilities: caps, missingBatches: async () => [] }), ['missingBatches() is there but queue.lostBatchDetection is not declared']);
    const progress = { ...caps, admin: { ...caps.admin, progress: true } };
    const partial = capabilityMismatches({ capabilities: progress, publishProgress: async () => ({}), listProgress: async () => [] });
    assert.deepEqual(partial, ['admin.progress is declared but removeProgress() is missing', 'admin.progress is declared but requestCancel() is missing']);
  });

  it('reports a capability left undeclared and one the seam does not know', () => {
    const caps = all(false) as unknown as { queue: Record<string, boolean>; admin: Record<string, boolean> };
    const { fifo: _fifo, ...queue } = caps.queue;
    const out = capabilityMismatches({ capabilities: { queue: { ...queue, teleport: true }, admin: caps.admin } as unknown as BackendCapabilities });
    assert.deepEqual(out, ['queue.fifo is not declared (true or false)', 'queue.teleport is not a known capability']);
  });

  it('can() follows the declaration, and the skip reason names the capability and what it means', () => {
    const on = { capabilities: all(true) };
    const off = { capabilities: all(false) };
    assert.equal(can(on, 'withdraw'), true);
    assert.equal(can(on, 'lostBatchDetection'), true);
    assert.equal(can(off, 'withdraw'), false);
    assert.equal(can(off, 'wakeOnWork'), false);
    assert.equal(missingCapabilityReason('kafka', 'queue', 'leases'), `kafka does not declare queue.leases (${capabilityDescriptions.queue.leases})`);
    assert.doesNotMatch(missingCapabilityReason('sqs', 'admin', 'withdraw'), /\n/);
  });
});
