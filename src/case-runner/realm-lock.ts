/**
 * The realm lock of a case process (`--isolation process`): applied once, after the case runner has
 * loaded and before any user module does, so that an implementation cannot change how the checks
 * that judge it, or the runner that reports their results, behave. An implementation shares its realm
 * with its role's properties and relations; unlocked, it could answer for them (a getter on
 * Object.prototype for a property's `mode`, its own `Array.prototype.every`, reading a chunk's token
 * off the IPC channel and sending that chunk's results itself).
 *
 * - The JavaScript intrinsics reachable from the standard globals (and the hidden ones: iterator,
 *   generator and async function prototypes, %TypedArray%) are frozen, except the `Error` constructor
 *   itself (libraries set `Error.stackTraceLimit` and `Error.prepareStackTrace`). A few properties
 *   that ordinary code assigns on its own objects (`err.name`, `Foo.prototype.toString`, `x.constructor`)
 *   become accessors that define the property on the object assigned to, so those assignments keep
 *   working. Node's `--frozen-intrinsics` does the same with many more accessors, which costs 2-3x on
 *   ordinary array code; freezing costs one thing here: appending to an array by index (`a[a.length] = x`)
 *   is about 12x slower than without the lock (V8's fast path needs Array.prototype unfrozen); `push` is not.
 * - The global bindings that are data properties cannot be reassigned (`globalThis.Array = …`).
 * - `node:assert`, `node:assert/strict`, `node:util`, `node:util/types`, `node:v8` (and its
 *   Serializer/Deserializer, which carry IPC messages) are frozen; `module.syncBuiltinESMExports`,
 *   `v8.getHeapSnapshot`, `v8.writeHeapSnapshot`, `v8.queryObjects` and `v8.setFlagsFromString` are
 *   refused (a heap snapshot holds every secret of the process).
 * - The IPC channel belongs to the runner: `process.emit('message')` reaches only the runner's handler
 *   (listeners an implementation adds hear nothing), and what Node's IPC code looks up at call time
 *   is pinned to the functions it had (`process.send`, `_send`, `nextTick`, `listenerCount`,
 *   `Buffer.concat`, the pipe handle's read and write methods). This is a list of known routes, not
 *   a boundary: the request and its token live in the process that runs user code. The lasting fix
 *   is to run the checks in a process that never loads user code.
 *
 * What stays writable: Node's other builtin modules (`fs`, `http`, …) and `EventEmitter.prototype`,
 * which common libraries patch. Checks should not call them on an implementation's behalf.
 */
import module from 'node:module';
import v8 from 'node:v8';
import { permissionError } from '../execution/thread-guard.js';

const STANDARD_GLOBALS = [
  'Object', 'Function', 'Array', 'Number', 'Boolean', 'String', 'Symbol', 'Date', 'Promise', 'RegExp',
  'AggregateError', 'EvalError', 'RangeError', 'ReferenceError', 'SyntaxError', 'TypeError', 'URIError',
  'SuppressedError', 'JSON', 'Math', 'Intl', 'ArrayBuffer', 'SharedArrayBuffer', 'Atomics', 'DataView',
  'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array',
  'Float16Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array', 'Map', 'Set', 'WeakMap',
  'WeakSet', 'WeakRef', 'FinalizationRegistry', 'BigInt', 'Proxy', 'Reflect', 'Iterator', 'DisposableStack',
  'AsyncDisposableStack', 'structuredClone', 'queueMicrotask', 'isFinite', 'isNaN', 'parseFloat', 'parseInt',
  'decodeURI', 'decodeURIComponent', 'encodeURI', 'encodeURIComponent', 'escape', 'unescape', 'eval',
];

/** Properties ordinary code assigns on objects that inherit them from a frozen intrinsic. */
const OVERRIDABLE: [object, string[]][] = [
  [Object.prototype, ['constructor', 'toString', 'toLocaleString', 'valueOf', 'hasOwnProperty', 'isPrototypeOf', 'propertyIsEnumerable']],
  [Function.prototype, ['toString', 'name', 'constructor']],
  [Error.prototype, ['name', 'message', 'constructor', 'toString']],
  ...[EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError, AggregateError].map((E): [object, string[]] => [E.prototype, ['name', 'message', 'constructor']]),
];

let locked = false;

/** Whether this realm is locked (outputs are then copied before checks see them). */
export function realmLocked(): boolean {
  return locked;
}

/**
 * A data property turned into an accessor: reading it gives the value; assigning it on an object
 * that inherits it defines an own property there (what assignment would do were it not frozen);
 * assigning it on the intrinsic itself fails like a frozen property.
 */
function tame(obj: object, name: string): void {
  const d = Object.getOwnPropertyDescriptor(obj, name);
  if (!d || !('value' in d) || !d.configurable) return;
  const value = d.value as unknown;
  const defineProperty = Object.defineProperty;
  const hasOwn = Object.hasOwn;
  Object.defineProperty(obj, name, {
    get() {
      return value;
    },
    set(this: object, v: unknown) {
      if (this === obj) throw new TypeError(`Cannot assign to read only property '${name}' of a frozen built-in`);
      if (hasOwn(this, name)) (this as Record<string, unknown>)[name] = v;
      else defineProperty(this, name, { value: v, writable: true, enumerable: true, configurable: true });
    },
    enumerable: d.enumerable,
    configurable: false,
  });
}

function deepFreeze(roots: unknown[], skip: Set<unknown>): void {
  const seen = new Set<unknown>();
  const todo = [...roots];
  while (todo.length) {
    const o = todo.pop();
    if (o === null || (typeof o !== 'object' && typeof o !== 'function') || seen.has(o)) continue;
    seen.add(o);
    if (!skip.has(o)) Object.freeze(o);
    todo.push(Object.getPrototypeOf(o));
    for (const key of Reflect.ownKeys(o as object)) {
      const d = Object.getOwnPropertyDescriptor(o, key)!;
      if ('value' in d) todo.push(d.value);
      else todo.push(d.get, d.set);
    }
  }
}

/** Pins `obj[name]` to the value it has now. */
function pin(obj: object, name: PropertyKey, value: unknown = (obj as Record<PropertyKey, unknown>)[name]): void {
  Object.defineProperty(obj, name, { value, writable: false, enumerable: false, configurable: false });
}

/**
 * Locks this realm (see the module comment). `onMessage` is the runner's IPC handler: from here on the
 * only one that hears the parent.
 */
export function lockRealm(onMessage: (m: unknown) => void): void {
  if (locked) return;
  locked = true;
  const g = globalThis as Record<string, unknown>;
  const hidden = [
    Object.getPrototypeOf(function* () {}),
    Object.getPrototypeOf(async function () {}),
    Object.getPrototypeOf(async function* () {}),
    Object.getPrototypeOf([][Symbol.iterator]()),
    Object.getPrototypeOf(new Map()[Symbol.iterator]()),
    Object.getPrototypeOf(new Set()[Symbol.iterator]()),
    Object.getPrototypeOf(''[Symbol.iterator]()),
    Object.getPrototypeOf(/x/[Symbol.matchAll]('')),
    Object.getPrototypeOf(Int8Array),
  ];
  for (const [obj, names] of OVERRIDABLE) for (const name of names) tame(obj, name);

  const refuse = (what: string) => () => {
    throw permissionError(what);
  };
  for (const name of ['getHeapSnapshot', 'writeHeapSnapshot', 'queryObjects', 'setFlagsFromString'] as const) {
    if (name in v8) (v8 as unknown as Record<string, unknown>)[name] = refuse(`v8.${name}`);
  }
  const syncBuiltins = module.syncBuiltinESMExports;
  pin(module, 'syncBuiltinESMExports', refuse('module.syncBuiltinESMExports'));
  // Named imports of node:v8 taken before this (there are none in user code yet) see the refusals too.
  syncBuiltins();

  const requireHere = module.createRequire(import.meta.url);
  const builtins = ['node:assert', 'node:assert/strict', 'node:util', 'node:util/types'].map((id) => requireHere(id) as object);

  // The IPC channel: messages reach the runner only, and what it sends goes out as it was written.
  const emit = process.emit;
  pin(process, 'emit', function (this: NodeJS.Process, name: string | symbol, ...args: unknown[]) {
    if (name === 'message') {
      onMessage(args[0]);
      return true;
    }
    return Reflect.apply(emit, this, [name, ...args]) as boolean;
  });
  // Node's IPC code looks these up at call time: `process.nextTick(emit, 'message', …)` hands each
  // message over, `listenerCount('message')` decides whether it is delivered or parked, the pipe
  // handle's `onread` sees its bytes, and `Buffer.concat` joins a message read in parts.
  for (const name of ['send', '_send', 'disconnect', 'nextTick', 'listenerCount']) if (typeof (process as unknown as Record<string, unknown>)[name] === 'function') pin(process, name);
  pin(Buffer, 'concat');
  const handleKey = Object.getOwnPropertySymbols(process).find((k) => k.description === 'kChannelHandle');
  for (const handle of [(process as unknown as { channel?: object }).channel, handleKey ? (process as unknown as Record<symbol, object>)[handleKey] : undefined]) {
    if (!handle) continue;
    for (const name of ['writeBuffer', 'writeUtf8String', 'readStart', 'readStop', 'onread']) if (typeof (handle as Record<string, unknown>)[name] === 'function') pin(handle, name);
  }

  deepFreeze([...STANDARD_GLOBALS.filter((n) => n in g).map((n) => g[n]), ...hidden], new Set([Error]));
  // Module objects and the IPC (de)serializer prototypes: their own properties, not what they reach.
  for (const o of [...builtins, v8, v8.Serializer.prototype, v8.Deserializer.prototype, v8.DefaultSerializer.prototype, v8.DefaultDeserializer.prototype]) Object.freeze(o);
  // Error's own statics stay writable; its prototype is frozen.
  deepFreeze([Error.prototype], new Set());
  for (const key of Reflect.ownKeys(globalThis)) {
    const d = Object.getOwnPropertyDescriptor(globalThis, key)!;
    if ('value' in d && d.configurable) Object.defineProperty(globalThis, key, { value: d.value, writable: false, enumerable: d.enumerable, configurable: false });
  }
}
