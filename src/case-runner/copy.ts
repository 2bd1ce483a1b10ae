/**
 * Copies of a case's arguments, so that an implementation (or a transform) that mutates what it is
 * given cannot change the arguments the properties and the other relations see.
 *
 * `structuredClone` costs microseconds even for a small array, several times per case, which on fast
 * cases is more than the case's own work. `copyArgs` copies JSON-like values (plain arrays, plain
 * objects, primitives) and typed arrays that own their whole buffer by hand, and hands anything else
 * — a Map, a Date, a class instance, a sparse array, a cycle, a value reached twice, a symbol — to
 * `structuredClone`, so such arguments keep its exact semantics (identity of shared values, cycles,
 * errors for what cannot be cloned). One difference remains on the fast path: named (non-index)
 * properties of an array are not copied.
 *
 * Everything used here is captured when the module loads, before any user module: a case that
 * replaces `Object.keys` or `Array.isArray` in its realm does not change how its inputs are copied.
 */
import { types } from 'node:util';

const { isArray } = Array;
const isProxy = types.isProxy;
const { keys, getPrototypeOf, defineProperty } = Object;
const ArrayProto = Array.prototype;
const ObjectProto = Object.prototype;
const clone = globalThis.structuredClone;
const isView = ArrayBuffer.isView;
const ArrayBufferProto = ArrayBuffer.prototype;
const byteLengthOf = Object.getOwnPropertyDescriptor(ArrayBufferProto, 'byteLength')!.get!;
const apply = Reflect.apply;
const slice = Array.prototype.slice;
const hasOwn = Object.hasOwn;

/** Typed array prototype → its constructor, as this realm had them when the module loaded. */
const typedArrays = new Map<object, new (source: ArrayLike<number> | ArrayLike<bigint>) => ArrayBufferView>();
for (const C of [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array]) {
  typedArrays.set(C.prototype, C as never);
}
// %TypedArray%.prototype getters, immune to a case replacing them on the constructors' prototypes.
const TypedArrayProto = getPrototypeOf(Int8Array.prototype) as object;
const taGetter = (name: string) => Object.getOwnPropertyDescriptor(TypedArrayProto, name)!.get!;
const taBuffer = taGetter('buffer');
const taByteOffset = taGetter('byteOffset');
const taByteLength = taGetter('byteLength');

/** Containers visited by one copy; past this many the copy falls back to structuredClone. */
const MAX_CONTAINERS = 64;
/** Nesting depth past which the copy falls back to structuredClone. */
const MAX_DEPTH = 32;

const BAIL = Symbol('bail');

/**
 * Appends `o` to `list` as an own property: no `push` and no index setter on Array.prototype (which
 * code in this realm may have replaced or defined) ever sees the case's values.
 */
function remember(list: object[], o: object): void {
  defineProperty(list, list.length, { value: o, writable: true, enumerable: true, configurable: true });
}

class FastCopy {
  /** Containers seen so far: a value reached twice (or a cycle) needs structuredClone's identity map. */
  readonly seen: object[] = [];

  #visit(o: object): boolean {
    const seen = this.seen;
    if (seen.length >= MAX_CONTAINERS) return false;
    for (let i = 0; i < seen.length; i++) if (seen[i] === o) return false;
    remember(seen, o);
    return true;
  }

  value(v: unknown, depth: number): unknown {
    if (v === null) return v;
    const t = typeof v;
    if (t !== 'object') return t === 'symbol' || t === 'function' ? BAIL : v;
    if (depth > MAX_DEPTH || !this.#visit(v as object)) return BAIL;
    const proto = getPrototypeOf(v);
    if (proto === ArrayProto && isArray(v)) return this.array(v as unknown[], depth);
    if (proto === ObjectProto || proto === null) return this.object(v as Record<string, unknown>, depth);
    if (isView(v)) return this.typed(v as ArrayBufferView, proto);
    return BAIL;
  }

  array(src: unknown[], depth: number): unknown[] | typeof BAIL {
    // `slice` (captured) copies a packed array in one native step, into a packed array. It would ask
    // an own `constructor` for a species, and a Proxy for anything: those go to structuredClone. Not
    // filled by index from empty: appending by index is slow in a realm whose Array.prototype is
    // frozen (realm-lock.ts), and in-bounds stores (the nested values below) are not.
    if (isProxy(src) || hasOwn(src, 'constructor')) return BAIL;
    const out = apply(slice, src, []) as unknown[];
    // Everything below reads the copy, never `src` again: an accessor element of an output is read
    // once (by slice), so it cannot give one value to this scan and another to the copy.
    const n = out.length;
    for (let i = 0; i < n; i++) {
      const x = out[i];
      if (x === undefined) {
        // A hole is kept by structuredClone and would become undefined here.
        if (!(i in out)) return BAIL;
      } else if (x !== null) {
        const t = typeof x;
        if (t === 'object') {
          const y = this.value(x, depth + 1);
          if (y === BAIL) return BAIL;
          out[i] = y;
        } else if (t === 'symbol' || t === 'function') return BAIL;
      }
    }
    return out;
  }

  object(src: Record<string, unknown>, depth: number): Record<string, unknown> | typeof BAIL {
    // structuredClone gives every plain object (null prototype included) Object.prototype.
    const out: Record<string, unknown> = {};
    const ks = keys(src);
    for (let i = 0; i < ks.length; i++) {
      const k = ks[i];
      const y = this.value(src[k], depth + 1);
      if (y === BAIL) return BAIL;
      // An own `__proto__` key stays an own property (an assignment would set the prototype).
      if (k === '__proto__') defineProperty(out, k, { value: y, writable: true, enumerable: true, configurable: true });
      else out[k] = y;
    }
    return out;
  }

  typed(src: ArrayBufferView, proto: object): ArrayBufferView | typeof BAIL {
    const C = typedArrays.get(proto);
    // DataView, a subclass, a view on part of a buffer or on a SharedArrayBuffer: structuredClone.
    if (C === undefined) return BAIL;
    const buffer = apply(taBuffer, src, []) as ArrayBuffer;
    if (getPrototypeOf(buffer) !== ArrayBufferProto || apply(taByteOffset, src, []) !== 0 || apply(taByteLength, src, []) !== apply(byteLengthOf, buffer, [])) return BAIL;
    if (!this.#visit(buffer)) return BAIL;
    // The constructor copies a typed array's elements directly (no iterator, no species lookup).
    return new C(src as unknown as ArrayLike<number>);
  }
}

/** A plain array that copies like data: Array.prototype, no Proxy, no own `constructor` (a species). */
function plainArray(v: unknown): v is unknown[] {
  // isProxy first: getPrototypeOf of a Proxy would run its trap.
  return isArray(v) && !isProxy(v) && getPrototypeOf(v) === ArrayProto && !hasOwn(v, 'constructor');
}

/** True when every element of `out` (a copy) is a primitive a copy keeps as it is: no hole, object, symbol or function. */
function primitivesOnly(out: unknown[]): boolean {
  for (let i = 0; i < out.length; i++) {
    const x = out[i];
    if (x === undefined) {
      if (!(i in out)) return false;
    } else if (x !== null) {
      const t = typeof x;
      if (t === 'object' || t === 'symbol' || t === 'function') return false;
    }
  }
  return true;
}

/**
 * The shape almost every case has, copied without the general walk: a plain array whose elements are
 * primitives or up to four distinct plain arrays of primitives (`[xs]`, `[xs, k]`, `[1, 2, 3]`). BAIL
 * for anything else, which the general path then copies (or hands to structuredClone). It copies what
 * the general path would, the same way: each array by the captured `slice`, read once. The nested
 * arrays met so far are held in locals, not in a shared list: a getter that runs during a `slice`
 * and copies something itself cannot make this copy forget one.
 */
function quickCopy(src: unknown): unknown[] | typeof BAIL {
  if (!plainArray(src)) return BAIL;
  const out = apply(slice, src, []) as unknown[];
  let s0: unknown;
  let s1: unknown;
  let s2: unknown;
  let s3: unknown;
  let nested = 0;
  const n = out.length;
  for (let i = 0; i < n; i++) {
    const x = out[i];
    if (x === undefined) {
      if (!(i in out)) return BAIL;
    } else if (x !== null) {
      const t = typeof x;
      if (t === 'object') {
        // An array reached twice keeps its identity only through structuredClone.
        if (x === src || x === s0 || x === s1 || x === s2 || x === s3 || nested === 4 || !plainArray(x)) return BAIL;
        if (nested === 0) s0 = x;
        else if (nested === 1) s1 = x;
        else if (nested === 2) s2 = x;
        else s3 = x;
        nested++;
        const inner = apply(slice, x, []) as unknown[];
        if (!primitivesOnly(inner)) return BAIL;
        out[i] = inner;
      } else if (t === 'symbol' || t === 'function') return BAIL;
    }
  }
  return out;
}

/**
 * What the checks of a case see of an implementation's output in a locked realm (realm-lock.ts): a
 * copy made here, as data, so that properties, relations and the equivalence never call into the value
 * the implementation returned (a Proxy, an Array subclass, an array with its own `every`). The fast
 * path is `copyArgs`'s; anything else goes through `structuredClone`, which copies what is data and
 * throws a DataCloneError for what is not (a function, a symbol, a Proxy of an object).
 */
export function copyOutput(value: unknown): unknown {
  const t = typeof value;
  if (value === null || (t !== 'object' && t !== 'function' && t !== 'symbol')) return value;
  if (t === 'object') {
    const quick = quickCopy(value);
    if (quick !== BAIL) return quick;
    const out = new FastCopy().value(value, 0);
    if (out !== BAIL) return out;
  }
  return clone(value);
}

/**
 * A copy of a case's argument list that the callee may mutate freely. The fast path covers JSON-like
 * values and whole-buffer typed arrays; everything else is `structuredClone`d (which throws a
 * DataCloneError for what cannot be cloned, as before).
 */
export function copyArgs(args: unknown[]): unknown[] {
  const quick = quickCopy(args);
  if (quick !== BAIL) return quick;
  if (isArray(args) && getPrototypeOf(args) === ArrayProto) {
    const copy = new FastCopy();
    remember(copy.seen, args);
    const out = copy.array(args, 0);
    if (out !== BAIL) return out;
  }
  return clone(args);
}
