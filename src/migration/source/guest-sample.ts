// A few of the guest's non-zero pages, spread evenly over its memory: what the encoding samplers
// (lz4-sample.ts, xbzrle-sample.ts) time before the first pass to judge an encoding by.

import { readPageCopy } from '../../memory/file-pages.js';
import { kernelsOf, pageOffset, type Slab } from '../../memory/slab.js';
import { viewsOf } from '../../wasm/views.js';

/** Copies of up to `count` guest pages at (i + ½) / `count` of the way through memory, zero pages left out. */
export function sampleGuestPages(slabs: readonly Slab[], count: number): Uint8Array[] {
  const total = slabs.reduce((n, s) => n + s.pageCount, 0);
  const pages: Uint8Array[] = [];
  for (let i = 0; i < count && total > 0; i++) {
    let local = Math.floor(((i + 0.5) * total) / count);
    let s = 0;
    while (local >= slabs[s].pageCount) local -= slabs[s++].pageCount;
    const slab = slabs[s];
    if (slab.file !== null) {
      const page = readPageCopy(slab, local);
      if (page.some((b) => b !== 0)) pages.push(page);
      continue;
    }
    const offset = pageOffset(slab, local);
    if (kernelsOf(slab).raw.isZeroPage(offset, slab.layout.pageSize) === 1) continue;
    pages.push(viewsOf(slab.memory).u8.slice(offset, offset + slab.layout.pageSize));
  }
  return pages;
}

/**
 * The fastest of `rounds` timings of `work` in ms: one round is well under a millisecond, and a single
 * preemption on a busy host (a scheduler slice is several) would otherwise make it look ten times slower.
 */
export function fastestMs(rounds: number, work: () => void): number {
  let fastest = Infinity;
  for (let round = 0; round < rounds; round++) {
    const t = performance.now();
    work();
    fastest = Math.min(fastest, performance.now() - t);
  }
  return Math.max(1e-6, fastest);
}
