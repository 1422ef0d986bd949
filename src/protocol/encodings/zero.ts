// ZERO: a page of zero bytes, sent as its entry alone. The encode kernel tests every page for zero
// before anything else (a zero page costs 16 bytes on the wire whatever else is negotiated); the apply
// kernel writes zeros only where the page's recorded hash says it is not zero already.
//
//   entry: page  size=0 | 0 << 24  hash=mxh64(zero page)        payload: —

import { PageEncoding } from '../constants.js';
import type { EncodingOps } from './index.js';

export const zero = {
  id: PageEncoding.ZERO,
  name: 'zero',
  capability: 0,
  perPage: 'kernel',
  maxEncodedSize: () => 0,
  sizeError: (size: number) => (size !== 0 ? `zero page with ${size} payload bytes` : null),
} as const satisfies EncodingOps;
