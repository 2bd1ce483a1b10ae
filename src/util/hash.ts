import { createHash } from 'node:crypto';

/** The sha256 of `bytes`, as 64 lowercase hex digits: the identity of module bundles and artifacts. */
export const sha256 = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');
