// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-8. Covers frame headers and the
// metadata of page batches; page contents are covered by their own 64-bit hashes instead
// (page-batch.ts). Test vector: "123456789" → 0xE3069283.
//
// Short inputs run here, in JS. From KERNEL_MIN_BYTES on, the same function runs in the kernels
// (assembly/crc32c.ts): in place where the bytes lie in kernel memory (a batch in the arena), else
// through the thread's scratch kernels. A long input is rare on most threads (a MISSING_PAGES bitmap
// at a switchover: 32 KiB for 1 GiB), so V8 would run the JS loop over it interpreted: ~1–2 ms here.

import { kernelsHolding, scratchKernels } from '../wasm/kernels.js';

/** Inputs this long or longer go to the kernels. */
export const KERNEL_MIN_BYTES = 256;

const TABLES: Uint32Array[] = (() => {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[0][i] = c >>> 0;
  }
  for (let i = 0; i < 256; i++) {
    for (let s = 1; s < 8; s++) t[s][i] = (t[s - 1][i] >>> 8) ^ t[0][t[s - 1][i] & 0xff];
  }
  return t;
})();

/** Continues a CRC-32C over bytes [start, end) of `buf`; start with crc = 0. */
export function crc32c(buf: Uint8Array, start = 0, end = buf.length, crc = 0): number {
  return end - start >= KERNEL_MIN_BYTES ? crc32cInKernels(buf, start, end, crc) : crc32cInJs(buf, start, end, crc);
}

function crc32cInKernels(buf: Uint8Array, start: number, end: number, crc: number): number {
  const held = kernelsHolding(buf.buffer);
  if (held !== undefined) return held.crc32c(buf.byteOffset + start, end - start, crc) >>> 0;
  let s;
  try {
    s = scratchKernels();
  } catch {
    return crc32cInJs(buf, start, end, crc); // no kernels in this process: the JS CRC is the same function
  }
  let c = crc;
  for (let at = start; at < end; at += s.room) {
    const n = Math.min(s.room, end - at);
    s.u8.set(buf.subarray(at, at + n), s.at);
    c = s.raw.crc32c(s.at, n, c) >>> 0;
  }
  return c;
}

/** The JS CRC, whatever the length (the kernels' reference in tests). */
export function crc32cInJs(buf: Uint8Array, start = 0, end = buf.length, crc = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES;
  let c = ~crc >>> 0;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const a = (c ^ (buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24))) >>> 0;
    c = t7[a & 0xff] ^ t6[(a >>> 8) & 0xff] ^ t5[(a >>> 16) & 0xff] ^ t4[a >>> 24] ^
      t3[buf[i + 4]] ^ t2[buf[i + 5]] ^ t1[buf[i + 6]] ^ t0[buf[i + 7]];
  }
  for (; i < end; i++) c = t0[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
