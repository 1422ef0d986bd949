// RAW: the page as it is, the fallback of every other encoding. The encode kernel copies and hashes
// it in one read straight into the payload (so the hash matches the bytes sent even if the guest
// writes the page meanwhile); the apply kernel hashes it in place before copying it into RAM.
//
//   entry: page  size=pageSize | 1 << 24  hash        payload: the page (pageSize bytes)

import { PageEncoding } from '../constants.js';
import type { EncodingOps } from './index.js';

export const raw = {
  id: PageEncoding.RAW,
  name: 'raw',
  capability: 0,
  perPage: 'kernel',
  maxEncodedSize: (pageSize: number) => pageSize,
  sizeError: (size: number, pageSize: number) => (size !== pageSize ? `raw page of ${size} bytes, page size is ${pageSize}` : null),
} as const satisfies EncodingOps;
