/** A batch codec: many payloads ⇄ one checksummed, optionally compressed frame (see frame.ts). */
export interface Codec {
  readonly impl: 'native' | 'js';
  encode(payloads: Uint8Array[]): Uint8Array;
  /** Throws a MetaguardError with code MG_ERR_CODEC on any malformed, truncated or tampered frame. */
  decode(frame: Uint8Array): Uint8Array[];
}

export interface CodecOptions {
  /** Prefer the native codec when it loads. @defaultValue true unless METAGUARD_NATIVE=0 */
  native?: boolean;
  /** LZ4-compress bodies when that makes them smaller. @defaultValue true */
  compress?: boolean;
}
