/**
 * copyArgs (src/case-runner/copy.ts): the fast copy of a case's arguments gives the same values as
 * structuredClone, never shares a container with its input, and falls back to structuredClone for
 * what it does not handle (shared values, cycles, holes, Maps, partial typed-array views).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { copyArgs, copyOutput } from '../src/case-runner/copy.ts';

function containers(v: unknown, out: object[] = []): object[] {
  if (v !== null && typeof v === 'object') {
    out.push(v);
    if (ArrayBuffer.isView(v)) out.push(v.buffer);
    else for (const x of Object.values(v)) containers(x, out);
  }
  return out;
}

test('JSON-like arguments: equal to structuredClone, no container shared with the input', () => {
  fc.assert(
    fc.property(fc.array(fc.jsonValue({ maxDepth: 4 }), { maxLength: 4 }), (args) => {
      const copy = copyArgs(args);
      assert.deepStrictEqual(copy, structuredClone(args));
      const mine = new Set(containers(args));
      for (const c of containers(copy)) assert.ok(!mine.has(c), 'a container of the copy is the input’s');
    }),
  );
});

test('mutating the copy leaves the arguments intact (arrays, objects, typed arrays)', () => {
  const args = [[3, 1, 2], { a: [1], b: { c: 'x' } }, new Float64Array([1.5, -2]), new BigInt64Array([1n])];
  const before = structuredClone(args);
  const copy = copyArgs(args) as [number[], { a: number[]; b: { c: string } }, Float64Array, BigInt64Array];
  copy[0].sort();
  copy[1].a.push(9);
  copy[1].b.c = 'y';
  copy[2][0] = 0;
  copy[3][0] = 0n;
  assert.deepStrictEqual(args, before);
  assert.ok(copy[2] instanceof Float64Array && copy[3] instanceof BigInt64Array);
});

test('structuredClone semantics where the fast path does not apply', () => {
  // A value reached twice stays one value; a cycle stays a cycle.
  const shared = [1, 2];
  const [a, b] = copyArgs([shared, shared]) as number[][];
  assert.equal(a, b);
  assert.notEqual(a, shared);
  const cyclic: Record<string, unknown> = { n: 1 };
  cyclic.self = cyclic;
  const [c] = copyArgs([cyclic]) as Record<string, unknown>[];
  assert.equal(c.self, c);
  // Holes stay holes; Maps, Dates and partial views are cloned, not flattened.
  // eslint-disable-next-line no-sparse-arrays
  const [holey] = copyArgs([[1, , 3]]) as unknown[][];
  assert.equal(1 in holey, false);
  const [m, d] = copyArgs([new Map([[1, 2]]), new Date(5)]) as [Map<number, number>, Date];
  assert.equal(m.get(1), 2);
  assert.equal(d.getTime(), 5);
  const buf = new Uint8Array([1, 2, 3, 4]);
  const [view, whole] = copyArgs([buf.subarray(1, 3), buf]) as Uint8Array[];
  assert.equal(view.buffer, whole.buffer);
  assert.deepStrictEqual([...view], [2, 3]);
  // What structuredClone cannot clone still fails the same way.
  assert.throws(() => copyArgs([() => 1]), { name: 'DataCloneError' });
  assert.throws(() => copyArgs([Symbol('s')]), { name: 'DataCloneError' });
});

test('an own __proto__ key stays data, and null-prototype objects come back as plain objects', () => {
  const o = JSON.parse('{"__proto__": {"x": 1}}') as object;
  const [copy] = copyArgs([o]) as object[];
  assert.equal(Object.getPrototypeOf(copy), Object.prototype);
  assert.deepStrictEqual(Object.keys(copy), ['__proto__']);
  const bare = Object.assign(Object.create(null) as object, { k: 1 });
  assert.deepStrictEqual(copyArgs([bare]), structuredClone([bare]));
});

test('a realm whose Object.keys and Array.isArray were replaced after load copies the same', () => {
  const keys = Object.keys;
  const isArray = Array.isArray;
  try {
    Object.keys = () => [];
    Array.isArray = ((_: unknown) => false) as typeof Array.isArray;
    assert.deepStrictEqual(copyArgs([{ a: [1, 2] }]), [{ a: [1, 2] }]);
  } finally {
    Object.keys = keys;
    Array.isArray = isArray;
  }
});

test('argument lists of primitives and arrays of primitives (the quick path): equal to structuredClone, nothing shared', () => {
  const primitive = fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 3 }), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.bigInt());
  fc.assert(
    fc.property(fc.array(fc.oneof(primitive, fc.array(primitive, { maxLength: 6 }), fc.sparseArray(primitive, { maxLength: 6 })), { maxLength: 12 }), (args) => {
      const copy = copyArgs(args);
      assert.deepStrictEqual(copy, structuredClone(args));
      for (let i = 0; i < args.length; i++) {
        if (Array.isArray(args[i])) {
          assert.notEqual(copy[i], args[i]);
          // Holes stay holes.
          for (let j = 0; j < (args[i] as unknown[]).length; j++) assert.equal(j in (copy[i] as unknown[]), j in (args[i] as unknown[]));
        }
      }
    }),
  );
  // More nested arrays than the quick path tracks, one of them twice: still one value in the copy.
  const shared = [0];
  const many = [...Array.from({ length: 9 }, (_, i) => [i]), shared, shared];
  const copy = copyArgs(many) as number[][];
  assert.deepStrictEqual(copy, structuredClone(many));
  assert.equal(copy[9], copy[10]);
});

test('a realm whose Array.prototype methods and index setters were replaced copies the same, and the copy never reaches them', () => {
  const seen: unknown[] = [];
  const saved = { push: Array.prototype.push, includes: Array.prototype.includes, slice: Array.prototype.slice };
  try {
    Array.prototype.push = function (...xs: unknown[]) {
      for (const x of xs) seen[seen.length] = x;
      return 0;
    };
    Array.prototype.includes = () => true;
    Array.prototype.slice = () => ['forged'];
    Object.defineProperty(Array.prototype, '7', { configurable: true, set(v: unknown) { seen[seen.length] = v; } });
    const xs = [3, 1, 2];
    const copy = copyArgs([xs, [4]]) as number[][];
    assert.deepEqual(copy, [[3, 1, 2], [4]]);
    assert.notEqual(copy[0], xs);
    // The general path (objects, nested arrays) too.
    const o = { a: [1, [2]], b: { c: 'x' } };
    assert.deepEqual(copyArgs([o, [[5]]]), [{ a: [1, [2]], b: { c: 'x' } }, [[5]]]);
    assert.deepEqual(seen, [], 'no replaced method or setter saw the arguments');
  } finally {
    delete (Array.prototype as unknown as Record<string, unknown>)['7'];
    Object.assign(Array.prototype, saved);
  }
});

test('a getter that copies something while a copy runs does not make that copy lose an array reached twice', () => {
  const a = [1, 2];
  const b: unknown[] = [0];
  Object.defineProperty(b, 0, { enumerable: true, get: () => (copyOutput([[7]]), copyArgs([[8]]), 0) });
  for (const copy of [copyOutput([a, b, a]) as unknown[][], copyArgs([a, b, a]) as unknown[][]]) {
    assert.equal(copy[0], copy[2], 'one array in the copy, as structuredClone gives');
    assert.notEqual(copy[0], a);
    assert.deepEqual(copy, [[1, 2], [0], [1, 2]]);
  }
});
