// XBZRLE: the XOR delta of a page against its previous content (QEMU xbzrle.c; grammar and kernels in
// assembly/xbzrle.ts). Only after pass 1 and only when negotiated: the source keeps the last-sent
// content in its cache, the destination rebuilds the page in scratch from what it holds and checks
// the hash before writing. A delta is kept only when it saves an eighth of the page, else raw is sent
// (applying raw is cheaper than decoding a delta that barely saves anything).
//
//   entry: page  size=0..pageSize | 2 << 24  hash(after)     payload: delta (uleb128 runs)

import { Capability, PageEncoding } from '../constants.js';
import type { EncodingOps } from './index.js';

export const xbzrle = {
  id: PageEncoding.XBZRLE,
  name: 'xbzrle',
  capability: Capability.XBZRLE,
  perPage: 'kernel',
  maxEncodedSize: (pageSize: number) => pageSize,
  sizeError: (size: number, pageSize: number) => (size > pageSize ? `xbzrle delta of ${size} bytes exceeds the page size ${pageSize}` : null),
  /** Largest delta the encode kernel keeps (its `deltaLimit`); a longer one is sent raw. */
  keepLimit: (pageSize: number) => pageSize - pageSize / 8,
} as const satisfies EncodingOps;
