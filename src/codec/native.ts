/**
 * The native codec: the frame's byte work (CRC-32C with the CPU's crc32 instruction, LZ4 through
 * the system liblz4, header and limit checks) in the Rust addon under native/, the per-payload work
 * in JavaScript. Frames are byte-compatible with the JS codec both ways (see frame.ts).
 *
 * Why the split: a Node-API call that touches a JS object costs ~60–130 ns, so handing 1,000
 * payloads to the addon one by one (`encodeFrame`) costs more than the LZ4 and checksum work, while
 * JIT-compiled JavaScript lays out a payload in ~20 ns and makes a view in ~15–30 ns. So `encode`
 * lays the raw body out here and the addon's `sealFrame` compresses and checksums it in one call;
 * `decode` lets `openFrame` check and decompress in one call and splits the body here (numbers in
 * bench/codec.ts and native/src/addon.rs).
 *
 * Loading follows napi-rs packages: `METAGUARD_NATIVE_PATH` names the binary outright; otherwise
 * `native/metaguard.<platform>-<arch>[-<abi>].node` under the package root, as
 * `napi build --platform` names it. Every failed attempt is kept, so one error (with an
 * AggregateError of the attempts as its `cause`) explains them all.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { MetaguardError } from '../errors.js';
import { packageRoot } from '../util/paths.js';
import { COMPRESS_MIN_BYTES, FRAME_HEADER_BYTES, MAX_FRAME_BODY, MAX_FRAME_PAYLOADS, codecError } from './frame.js';
import type { Codec, CodecOptions } from './types.js';

/** What the addon exports (native/src/addon.rs). */
export interface NativeBinding {
  /** Whole frame in one call; reads every payload through Node-API. */
  encodeFrame(payloads: Uint8Array[], compress?: boolean): Buffer;
  /** Whole frame in one call; payloads are Uint8Array views over one ArrayBuffer. */
  decodeFrame(frame: Uint8Array): Uint8Array[];
  /** Writes header and checksum into a frame whose raw body the caller laid out after 20 free bytes, or returns a new compressed frame. */
  sealFrame(frame: Uint8Array, count: number, compress?: boolean): Uint8Array;
  /** Checks a frame; returns its decompressed raw body, or null when the body is stored raw (`frame.subarray(20)`). */
  openFrame(frame: Uint8Array): Buffer | null;
  /** Sends one datagram to $NOTIFY_SOCKET; false when it is unset. Throws MG_ERR_NATIVE when the send fails. */
  sdNotify(message: string): boolean;
  crc32c(data: Uint8Array, seed?: number): number;
  /** waitpid(pid, WNOHANG): 1 collected, 0 a child still running, -1 not a child. Absent from binaries built before it. */
  reapExited?(pid: number): number;
  /** liblz4's version string. */
  readonly lz4Version: string;
  /** 'sse4.2' or 'table'. */
  readonly crc32cImpl: string;
}

/** Environment variable naming the `.node` file to load instead of the one under native/. */
export const NATIVE_PATH_ENV = 'METAGUARD_NATIVE_PATH';
/** The command that builds the addon (run from the package root; needs cargo and liblz4-dev). */
export const NATIVE_BUILD_COMMAND = 'npx napi build --release --platform --cwd native --no-js';

const REQUIRED_EXPORTS = ['encodeFrame', 'decodeFrame', 'sealFrame', 'openFrame', 'sdNotify', 'crc32c'] as const;

/** File name suffixes `napi build --platform` gives this platform, most likely first. */
function platformSuffixes(): string[] {
  const { platform, arch } = process;
  switch (platform) {
    case 'linux': {
      // glibc vs musl: try both rather than sniffing (a wrong one fails to load and is reported).
      const abis = arch === 'arm' ? ['gnueabihf', 'musleabihf'] : ['gnu', 'musl'];
      return [...abis.map((abi) => `linux-${arch}-${abi}`), `linux-${arch}`];
    }
    case 'win32':
      return [`win32-${arch}-msvc`, `win32-${arch}-gnu`];
    case 'darwin':
      return [`darwin-${arch}`, 'darwin-universal'];
    default:
      return [`${platform}-${arch}`];
  }
}

/** Where the binary may be, in the order tried. */
export function nativeCandidatePaths(): string[] {
  const override = process.env[NATIVE_PATH_ENV];
  if (override !== undefined && override !== '') return [resolve(override)];
  const dir = join(packageRoot(), 'native');
  return platformSuffixes().map((suffix) => join(dir, `metaguard.${suffix}.node`));
}

type LoadResult = { binding: NativeBinding; error?: undefined } | { binding?: undefined; error: MetaguardError };
let loaded: LoadResult | undefined;

function attemptError(path: string, reason: string, cause?: unknown): Error {
  return new Error(`${path}: ${reason}`, cause === undefined ? undefined : { cause });
}

function load(): LoadResult {
  const require = createRequire(import.meta.url);
  const attempts: Error[] = [];
  const overridden = !!process.env[NATIVE_PATH_ENV];
  for (const path of nativeCandidatePaths()) {
    if (!existsSync(path)) {
      attempts.push(attemptError(path, 'not found'));
      continue;
    }
    try {
      const binding = require(path) as Partial<NativeBinding>;
      const missing = REQUIRED_EXPORTS.filter((name) => typeof binding[name] !== 'function');
      if (missing.length > 0) {
        attempts.push(attemptError(path, `stale or foreign binary (missing ${missing.join(', ')}); rebuild it`));
        continue;
      }
      return { binding: binding as NativeBinding };
    } catch (err) {
      attempts.push(attemptError(path, `failed to load (${(err as Error).message.split('\n')[0]})`, err));
    }
  }
  // One error: its message lists every attempt; its cause holds each attempt's error, and each of
  // those the loader's own error (dlopen message, …).
  const chain = new AggregateError(attempts, 'native module load attempts');
  const how = overridden
    ? `${NATIVE_PATH_ENV} is set; unset it to use native/, or point it at a built binary`
    : `build it with \`${NATIVE_BUILD_COMMAND}\` (needs cargo and liblz4-dev) or set ${NATIVE_PATH_ENV}`;
  const message =
    `native module unavailable for ${process.platform}-${process.arch} (Node ${process.versions.node}, N-API ${process.versions.napi}): ` +
    `${attempts.map((a) => a.message).join('; ')}. ${how}`;
  return { error: new MetaguardError('MG_ERR_NATIVE', message, { cause: chain }) };
}

/** The addon, loaded once per thread. Throws a MetaguardError (MG_ERR_NATIVE) explaining every failed attempt. */
export function loadNativeBinding(): NativeBinding {
  loaded ??= load();
  if (loaded.error) throw loaded.error;
  return loaded.binding;
}

/** The addon, or undefined when it does not load (see `nativeLoadError`). */
export function tryLoadNativeBinding(): NativeBinding | undefined {
  loaded ??= load();
  return loaded.binding;
}

/** Why the addon did not load, or undefined when it did (or has not been tried). */
export function nativeLoadError(): MetaguardError | undefined {
  return loaded?.error;
}

let warned = false;
/** Emits the MG_NATIVE_UNAVAILABLE warning for a load failure, at most once per thread. */
export function warnNativeUnavailable(error: Error): void {
  if (warned) return;
  warned = true;
  process.emitWarning(`${error.message}; using the JavaScript fallback`, { code: 'MG_NATIVE_UNAVAILABLE' });
}

/**
 * `sd_notify(3)`: sends `message` (e.g. 'READY=1\nSTATUS=…') to `$NOTIFY_SOCKET`. Returns false when
 * NOTIFY_SOCKET is unset, or when the addon is unavailable — Node has no AF_UNIX datagram socket,
 * so there is no JavaScript fallback; the reason is then in `nativeLoadError()` and, if systemd is
 * waiting for the message, in the MG_NATIVE_UNAVAILABLE warning. Throws MG_ERR_NATIVE when the
 * datagram cannot be sent (no listener, bad address).
 */
export function sdNotify(message: string): boolean {
  const binding = tryLoadNativeBinding();
  if (binding === undefined) {
    if (process.env.NOTIFY_SOCKET) warnNativeUnavailable(nativeLoadError()!);
    return false;
  }
  return binding.sdNotify(message);
}

/**
 * Collects the exit status of `pid` if it is an exited child of this process (src/execution/reap.ts:
 * a killed process whose thread is gone would otherwise stay a zombie). 1 collected, 0 a child still
 * running, -1 not a child — or no addon (then nothing can collect it: Node has no waitpid).
 */
export function reapExited(pid: number): number {
  const binding = tryLoadNativeBinding();
  return binding?.reapExited ? binding.reapExited(pid) : -1;
}

/** Native errors keep their code and message but become MetaguardErrors, like the JS codec's. */
function asMetaguardError(err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'MG_ERR_CODEC' || code === 'MG_ERR_NATIVE') {
    return new MetaguardError(code, (err as Error).message, { cause: err });
  }
  return err;
}

/** Layout buffers above this size are not kept between batches. */
const SCRATCH_KEEP_BYTES = 4 * 1024 * 1024;

/**
 * The native codec. Throws MG_ERR_NATIVE when the addon does not load (use `createCodec` for the
 * automatic fallback). Decoded payloads are Buffers: views over the decompressed body, or over the
 * frame itself when it was not compressed (as with the JS codec).
 */
export function createNativeCodec(options: CodecOptions = {}, binding: NativeBinding = loadNativeBinding()): Codec {
  const compress = options.compress ?? true;
  // Compressible bodies are laid out in a reused buffer: the frame sent is the compressed copy.
  let scratch: Buffer | undefined;

  return {
    impl: 'native',
    encode(payloads: Uint8Array[]): Uint8Array {
      const count = payloads.length;
      let rawLength = 0;
      for (let i = 0; i < count; i++) rawLength += 4 + payloads[i].byteLength;
      if (count > MAX_FRAME_PAYLOADS) {
        throw new MetaguardError('MG_ERR_CODEC', `frame: ${count} payloads exceed the limit of ${MAX_FRAME_PAYLOADS} per frame`);
      }
      if (rawLength > MAX_FRAME_BODY) {
        throw new MetaguardError('MG_ERR_CODEC', `frame: a ${rawLength}-byte body exceeds the limit of ${MAX_FRAME_BODY} bytes per frame`);
      }
      const size = FRAME_HEADER_BYTES + rawLength;
      const reuse = compress && rawLength >= COMPRESS_MIN_BYTES && size <= SCRATCH_KEEP_BYTES;
      let frame: Buffer;
      if (reuse) {
        if (scratch === undefined || scratch.byteLength < size) scratch = Buffer.allocUnsafeSlow(Math.max(size, 64 * 1024));
        frame = scratch.subarray(0, size);
      } else {
        frame = Buffer.allocUnsafe(size);
      }
      let off = FRAME_HEADER_BYTES;
      for (let i = 0; i < count; i++) {
        const p = payloads[i];
        const n = p.byteLength;
        frame[off] = n;
        frame[off + 1] = n >>> 8;
        frame[off + 2] = n >>> 16;
        frame[off + 3] = n >>> 24;
        frame.set(p, off + 4);
        off += 4 + n;
      }
      let sealed: Uint8Array;
      try {
        sealed = binding.sealFrame(frame, count, compress);
      } catch (err) {
        throw asMetaguardError(err);
      }
      // Incompressible: the frame is the laid-out buffer itself, which now belongs to the caller.
      if (reuse && sealed === frame) scratch = undefined;
      return sealed;
    },

    decode(frame: Uint8Array): Uint8Array[] {
      let body: Uint8Array;
      try {
        body = binding.openFrame(frame) ?? frame.subarray(FRAME_HEADER_BYTES);
      } catch (err) {
        throw asMetaguardError(err);
      }
      // openFrame checked the header (count within limits) and the checksum; the lengths inside
      // the body are checked here, before each view is made.
      const count = (frame[8] | (frame[9] << 8) | (frame[10] << 16) | (frame[11] << 24)) >>> 0;
      const out = new Array<Uint8Array>(count);
      const buffer = body.buffer;
      const base = body.byteOffset;
      const end = body.byteLength;
      let off = 0;
      for (let i = 0; i < count; i++) {
        if (end - off < 4) throw codecError(`payload ${i} length runs past the body`);
        const len = (body[off] | (body[off + 1] << 8) | (body[off + 2] << 16) | (body[off + 3] << 24)) >>> 0;
        off += 4;
        if (len > end - off) throw codecError(`payload ${i} (${len} bytes) runs past the body`);
        out[i] = Buffer.from(buffer, base + off, len);
        off += len;
      }
      if (off !== end) throw codecError(`${end - off} trailing bytes after ${count} payloads`);
      return out;
    },
  };
}
