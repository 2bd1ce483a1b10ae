/**
 * `createCodec()`: the native codec when its binary loads, `options.native` is not false and
 * METAGUARD_NATIVE is not 0; else the pure-JS one. Both read each other's frames, so a fleet may mix
 * them. A binary that does not load is never fatal: one MG_NATIVE_UNAVAILABLE warning per process
 * (per thread) says why, and the JS codec is used.
 */
import { createJsCodec } from './js.js';
import { createNativeCodec, nativeLoadError, tryLoadNativeBinding, warnNativeUnavailable } from './native.js';
import type { Codec, CodecOptions } from './types.js';

export type { Codec, CodecOptions } from './types.js';
export { nativeLoadError, sdNotify } from './native.js';

/** Environment variable that turns the native codec off when set to 0 (or false). */
export const NATIVE_ENV = 'METAGUARD_NATIVE';

/** True when METAGUARD_NATIVE disables the native codec. */
export function nativeDisabledByEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env[NATIVE_ENV]?.trim().toLowerCase();
  return v === '0' || v === 'false';
}

/**
 * No small-batch JS path (unlike ws's masking, where tiny inputs stay in JS): the native codec does
 * one Node-API call per frame and was measured faster at every batch size, e.g. encode+decode of
 * 1 payload (95 bytes) 0.4 µs vs 0.9 µs for JS, 8 payloads (766 bytes) 2.3x, 64 payloads 2.6–3.7x,
 * 1,000 payloads 2.5x+ (bench/codec.ts; Node 20, x86-64).
 */
export function createCodec(options: CodecOptions = {}): Codec {
  if (options.native === false || nativeDisabledByEnv()) return createJsCodec(options);
  const binding = tryLoadNativeBinding();
  if (binding === undefined) {
    warnNativeUnavailable(nativeLoadError()!);
    return createJsCodec(options);
  }
  return createNativeCodec(options, binding);
}
