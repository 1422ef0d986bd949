// What XBZRLE deltas would cost on this host, measured before the first pass (for --xbzrle auto): a
// few of the guest's pages, each against a copy of itself with one word in 32 changed (a page a running
// guest rewrote in places), taken through the encoder's delta path (copy + hash into scratch, the
// delta against the cached copy, the cache slot rewritten) on one thread, timed. The pages are copied
// into a memory of the sample's own, so no slab is touched.

import type { Slab } from '../../memory/slab.js';
import { PageEncoding } from '../../protocol/constants.js';
import { ENCODINGS } from '../../protocol/encodings/index.js';
import { KERNEL_RESERVED_BYTES, Kernels, WASM_PAGE_BYTES } from '../../wasm/kernels.js';
import type { XbzrleSample } from '../compression.js';
import { fastestMs, sampleGuestPages } from './guest-sample.js';

/**
 * Pages sampled (zero pages are skipped: they never become deltas). Enough that the page, its cached
 * copy and its slot (3 MiB) do not fit a core's cache here, as in a pass: with 32 pages the sample
 * ran at 1.7 GB/s where the pass's delta path ran at 1.1.
 */
export const XBZRLE_SAMPLE_PAGES = 256;
/** One u32 word in this many differs between a page and its cached copy. */
const CHANGED_WORD_EVERY = 32;
const SAMPLE_ROUNDS = 5;

export function sampleXbzrle(slabs: readonly Slab[]): XbzrleSample {
  const pages = sampleGuestPages(slabs, XBZRLE_SAMPLE_PAGES);
  if (pages.length === 0) return { bytesPerSecond: 0, ratio: 1, pages: 0 };
  const pageSize = pages[0].length;
  const n = pages.length;
  // [reserved][current n][cached n][slots n][scratch][out]
  const current = KERNEL_RESERVED_BYTES;
  const cached = current + n * pageSize;
  const slots = cached + n * pageSize;
  const scratch = slots + n * pageSize;
  const out = scratch + pageSize;
  const bytes = out + pageSize;
  const wasmPages = Math.ceil(bytes / WASM_PAGE_BYTES);
  const memory = new WebAssembly.Memory({ initial: wasmPages, maximum: wasmPages, shared: true });
  const k = new Kernels(memory).raw;
  const u8 = new Uint8Array(memory.buffer);
  const dv = new DataView(memory.buffer);
  pages.forEach((page, i) => {
    u8.set(page, current + i * pageSize);
    u8.set(page, cached + i * pageSize);
    for (let w = 0; w < pageSize; w += 4 * CHANGED_WORD_EVERY) dv.setUint32(cached + i * pageSize + w, dv.getUint32(cached + i * pageSize + w) ^ 0x5a5a5a5a);
  });
  const limit = ENCODINGS[PageEncoding.XBZRLE].keepLimit!(pageSize);
  let wire = 0;
  const ms = fastestMs(SAMPLE_ROUNDS, () => {
    wire = 0;
    for (let i = 0; i < n; i++) {
      k.copyAndHash(scratch, current + i * pageSize, pageSize);
      const d = k.xorDeltaEncode(cached + i * pageSize, scratch, pageSize, out, limit);
      k.copyAndHash(slots + i * pageSize, scratch, pageSize);
      wire += d >= 0 ? d : pageSize;
    }
  });
  return { bytesPerSecond: (n * pageSize) / (ms / 1000), ratio: wire / (n * pageSize), pages: n };
}
