// What LZ4 would do to this guest, measured before the first pass (for --compress auto): a few raw
// pages spread over memory, compressed here as an encoder would, timed. One thread's rate times the
// encoders is what the pool can compress; the ratio is what the wire would carry of a raw page. Where
// the sending thread compresses (inline encoding), the sample says so: its time then adds to the
// socket's instead of overlapping it (compression.ts).

import type { Slab } from '../../memory/slab.js';
import { PageEncoding } from '../../protocol/constants.js';
import { ENCODINGS } from '../../protocol/encodings/index.js';
import type { Lz4Sample } from '../compression.js';
import { fastestMs, sampleGuestPages } from './guest-sample.js';

/** Pages sampled (the zero ones are skipped: they never reach LZ4). */
export const LZ4_SAMPLE_PAGES = 48;
/** Timed rounds over the sample; the fastest counts. */
const SAMPLE_ROUNDS = 5;

export function sampleLz4(slabs: readonly Slab[], encoders: number, serial = false): Lz4Sample {
  const LZ4 = ENCODINGS[PageEncoding.LZ4];
  const pages = sampleGuestPages(slabs, LZ4_SAMPLE_PAGES);
  if (pages.length === 0) return { bytesPerSecond: 0, ratio: 1, pages: 0 };
  LZ4.encode(pages[0], pages[0].length); // the first call instantiates the codec
  let packed = 0;
  let bytes = 0;
  const ms = fastestMs(SAMPLE_ROUNDS, () => {
    packed = 0;
    bytes = 0;
    for (const page of pages) {
      packed += LZ4.encode(page, page.length)?.length ?? page.length;
      bytes += page.length;
    }
  });
  return { bytesPerSecond: (bytes / (ms / 1000)) * encoders, ratio: packed / bytes, pages: pages.length, ...(serial ? { serial } : {}) };
}
