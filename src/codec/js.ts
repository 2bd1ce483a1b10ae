/** The pure-JS frame codec: frame layout in JS, LZ4 through lz4-napi, CRC-32C in JS. */
import { compressSync, uncompressSync } from 'lz4-napi';
import { crc32c } from './crc32c.js';
import { COMPRESS_MIN_BYTES, FLAG_LZ4, FRAME_HEADER_BYTES, codecError, readHeader, splitBody, writeHeader } from './frame.js';
import type { Codec, CodecOptions } from './types.js';

/** lz4-napi's block format: u32 LE uncompressed size, then an LZ4 block (lz4_flex `prepend_size`). */
function lz4Decompress(block: Uint8Array, expected: number): Uint8Array {
  if (block.byteLength < 4) throw codecError('truncated compressed body');
  const declared = block[0] | (block[1] << 8) | (block[2] << 16) | (block[3] * 0x1000000);
  if (declared !== expected) throw codecError(`compressed body declares ${declared} bytes, header says ${expected}`);
  // LZ4 expands at most ~255x; a smaller input cannot honestly produce `expected` bytes.
  if (expected > (block.byteLength - 4) * 255 + 16) throw codecError('compressed body too small for its declared size');
  let out: Buffer;
  try {
    out = uncompressSync(Buffer.from(block.buffer, block.byteOffset, block.byteLength));
  } catch (err) {
    throw codecError(`LZ4 body is corrupt (${(err as Error).message})`);
  }
  if (out.byteLength !== expected) throw codecError(`LZ4 body decompressed to ${out.byteLength} bytes, expected ${expected}`);
  return out;
}

export function createJsCodec(options: CodecOptions = {}): Codec {
  const compress = options.compress ?? true;
  return {
    impl: 'js',
    encode(payloads: Uint8Array[]): Uint8Array {
      let rawLength = 0;
      for (const p of payloads) rawLength += 4 + p.byteLength;
      const raw = Buffer.allocUnsafe(rawLength);
      let off = 0;
      for (const p of payloads) {
        raw.writeUInt32LE(p.byteLength, off);
        raw.set(p, off + 4);
        off += 4 + p.byteLength;
      }
      let body: Uint8Array = raw;
      let flags = 0;
      if (compress && rawLength >= COMPRESS_MIN_BYTES) {
        const packed = compressSync(raw);
        if (packed.byteLength < rawLength) {
          body = packed;
          flags = FLAG_LZ4;
        }
      }
      const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.byteLength);
      writeHeader(frame, { flags, count: payloads.length, rawLength });
      frame.set(body, FRAME_HEADER_BYTES);
      const crc = crc32c(frame, FRAME_HEADER_BYTES, frame.byteLength, crc32c(frame, 0, 16));
      frame.writeUInt32LE(crc, 16);
      return frame;
    },
    decode(frame: Uint8Array): Uint8Array[] {
      const header = readHeader(frame);
      const crc = crc32c(frame, FRAME_HEADER_BYTES, frame.byteLength, crc32c(frame, 0, 16));
      if (crc !== header.crc) throw codecError('checksum mismatch (corrupt or tampered frame)');
      const stored = frame.subarray(FRAME_HEADER_BYTES);
      const body = header.flags & FLAG_LZ4 ? lz4Decompress(stored, header.rawLength) : stored;
      return splitBody(body, header.count);
    },
  };
}
