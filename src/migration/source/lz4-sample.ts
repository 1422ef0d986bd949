// What LZ4 would do to this guest, measured before the first pass (for --compress auto): a few raw
// pages spread over memory, compressed here as an encoder would, timed. One thread's rate times the
// encoders is what the pool can compress; the ratio is what the wire would carry of a raw page.

import { kernelsOf, pageOffset, type Slab } from '../../memory/slab.js';
import { PageEncoding } from '../../protocol/constants.js';
import { ENCODINGS } from '../../protocol/encodings/index.js';
import { viewsOf } from '../../wasm/views.js';
import type { Lz4Sample } from '../compression.js';

/** Pages sampled (the zero ones are skipped: they never reach LZ4). */
export const LZ4_SAMPLE_PAGES = 48;
/** Timed rounds over the sample; the fastest counts. */
const SAMPLE_ROUNDS = 5;

export function sampleLz4(slabs: readonly Slab[], encoders: number): Lz4Sample {
  const LZ4 = ENCODINGS[PageEncoding.LZ4];
  const total = slabs.reduce((n, s) => n + s.pageCount, 0);
  const pages: Uint8Array[] = [];
  for (let i = 0; i < LZ4_SAMPLE_PAGES && total > 0; i++) {
    // Guest page at (i + ½) / LZ4_SAMPLE_PAGES of the way through memory, as (slab, local page).
    let local = Math.floor(((i + 0.5) * total) / LZ4_SAMPLE_PAGES);
    let s = 0;
    while (local >= slabs[s].pageCount) local -= slabs[s++].pageCount;
    const slab = slabs[s];
    const offset = pageOffset(slab, local);
    if (kernelsOf(slab).raw.isZeroPage(offset, slab.layout.pageSize) === 1) continue;
    pages.push(viewsOf(slab.memory).u8.slice(offset, offset + slab.layout.pageSize));
  }
  if (pages.length === 0) return { bytesPerSecond: 0, ratio: 1, pages: 0 };
  LZ4.encode(pages[0], pages[0].length); // the first call instantiates the codec
  let packed = 0;
  let bytes = 0;
  // The fastest of a few rounds: one round is well under a millisecond, and a single preemption on a
  // busy host (a scheduler slice is several) would otherwise make LZ4 look ten times slower than it is.
  let fastest = Infinity;
  for (let round = 0; round < SAMPLE_ROUNDS; round++) {
    packed = 0;
    bytes = 0;
    const t = performance.now();
    for (const page of pages) {
      packed += LZ4.encode(page, page.length)?.length ?? page.length;
      bytes += page.length;
    }
    fastest = Math.min(fastest, performance.now() - t);
  }
  const seconds = Math.max(1e-6, fastest / 1000);
  return { bytesPerSecond: (bytes / seconds) * encoders, ratio: packed / bytes, pages: pages.length };
}
