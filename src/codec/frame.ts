/**
 * The batch frame: many payloads in one buffer.
 *
 *   offset size  field
 *   0      4     magic "MGF1"
 *   4      1     version (1)
 *   5      1     flags: bit 0 = body is LZ4-compressed
 *   6      2     reserved (0)
 *   8      4     payload count (u32 LE)
 *   12     4     raw body length (u32 LE): Σ(4 + payload length)
 *   16     4     CRC-32C over bytes 0..15 and the body as stored (u32 LE)
 *   20     …     body: per payload a u32 LE length and its bytes; if compressed, the LZ4 block of that
 *
 * The decoder is hostile-input safe: every length is checked against the bytes present and against
 * hard limits before anything is allocated, so a header that claims gigabytes is an error, not an
 * allocation. Errors carry code MG_ERR_CODEC.
 */
import { MetaguardError } from '../errors.js';

export const FRAME_MAGIC = 0x3146474d; // "MGF1" read as u32 LE
export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 20;
export const FLAG_LZ4 = 1;
/** Largest raw body a frame may declare (256 MiB). */
export const MAX_FRAME_BODY = 256 * 1024 * 1024;
/** Most payloads a frame may declare. */
export const MAX_FRAME_PAYLOADS = 1_000_000;
/** Bodies smaller than this are not worth compressing. */
export const COMPRESS_MIN_BYTES = 512;

export interface FrameHeader {
  flags: number;
  count: number;
  rawLength: number;
  crc: number;
}

export function codecError(reason: string): MetaguardError {
  return new MetaguardError('MG_ERR_CODEC', `frame: ${reason}`);
}

/** Reads and checks the fixed header (not the checksum, which needs the body). */
export function readHeader(frame: Uint8Array): FrameHeader {
  if (frame.byteLength < FRAME_HEADER_BYTES) throw codecError(`truncated header (${frame.byteLength} bytes)`);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (view.getUint32(0, true) !== FRAME_MAGIC) throw codecError('bad magic (not a metaguard frame)');
  const version = view.getUint8(4);
  if (version !== FRAME_VERSION) throw codecError(`unsupported version ${version}`);
  const flags = view.getUint8(5);
  if ((flags & ~FLAG_LZ4) !== 0 || view.getUint16(6, true) !== 0) throw codecError('unknown flags');
  const count = view.getUint32(8, true);
  const rawLength = view.getUint32(12, true);
  if (count > MAX_FRAME_PAYLOADS) throw codecError(`declares ${count} payloads (limit ${MAX_FRAME_PAYLOADS})`);
  if (rawLength > MAX_FRAME_BODY) throw codecError(`declares a ${rawLength}-byte body (limit ${MAX_FRAME_BODY})`);
  if (rawLength < count * 4) throw codecError(`body of ${rawLength} bytes cannot hold ${count} payloads`);
  if (!(flags & FLAG_LZ4) && frame.byteLength - FRAME_HEADER_BYTES !== rawLength) {
    throw codecError(`body is ${frame.byteLength - FRAME_HEADER_BYTES} bytes, header says ${rawLength}`);
  }
  return { flags, count, rawLength, crc: view.getUint32(16, true) };
}

export function writeHeader(frame: Uint8Array, header: Omit<FrameHeader, 'crc'>): void {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  view.setUint32(0, FRAME_MAGIC, true);
  view.setUint8(4, FRAME_VERSION);
  view.setUint8(5, header.flags);
  view.setUint16(6, 0, true);
  view.setUint32(8, header.count, true);
  view.setUint32(12, header.rawLength, true);
}

/** Splits a raw body into payloads (views into `body`, no copies), checking every length. */
export function splitBody(body: Uint8Array, count: number): Uint8Array[] {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const out = new Array<Uint8Array>(count);
  let off = 0;
  for (let i = 0; i < count; i++) {
    if (off + 4 > body.byteLength) throw codecError(`payload ${i} length runs past the body`);
    const len = view.getUint32(off, true);
    off += 4;
    if (len > body.byteLength - off) throw codecError(`payload ${i} (${len} bytes) runs past the body`);
    out[i] = body.subarray(off, off + len);
    off += len;
  }
  if (off !== body.byteLength) throw codecError(`${body.byteLength - off} trailing bytes after ${count} payloads`);
  return out;
}
