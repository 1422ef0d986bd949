// The receiver's side of a disk's `present` bitmap in post-copy (capability POSTCOPY_BLOCKS): of a run
// of checked blocks, only those not here yet are written, each made present after its write and its
// bitmap word notified (a vCPU may wait on it, page-gate.ts). A block already here may hold what the
// guest wrote since it arrived, which a late copy must not undo. One thread writes a disk's blocks and
// sets their bits, so the test and the write cannot race; the vCPU only reads the bits.

/**
 * Writes the blocks of run [first, first + count) whose bit in `present` is clear, as runs of
 * consecutive ones (`write(k, end)`: run offsets k..end-1), then sets their bits; returns how many.
 */
export function writeAbsentBlocks(present: Int32Array, first: number, count: number, write: (k: number, end: number) => void): number {
  const here = (k: number): boolean => ((Atomics.load(present, (first + k) >>> 5) >>> ((first + k) & 31)) & 1) === 1;
  let written = 0;
  for (let k = 0; k < count;) {
    if (here(k)) {
      k++;
      continue;
    }
    let end = k + 1;
    while (end < count && !here(end)) end++;
    write(k, end);
    for (let block = first + k; block < first + end; block++) {
      Atomics.or(present, block >>> 5, 1 << (block & 31));
      Atomics.notify(present, block >>> 5);
    }
    written += end - k;
    k = end;
  }
  return written;
}
