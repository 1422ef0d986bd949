// The blocks a disk's writers marked dirty, taken and grouped into runs of consecutive blocks: what a
// migration pass, a replication epoch and a save all send or write. Marks are taken word by word as the
// runs are consumed (a write after its word was taken marks its block again, for the next time), so a
// caller that awaits between runs sees the marks of later words as late as possible.

import type { BlockDevice } from './types.js';

interface BlockRun {
  first: number;
  count: number;
}

/**
 * Takes `device`'s dirty marks and yields them as runs of at most `maxRun` consecutive blocks, in
 * block order. `taken(word, bits)` sees each word's marks as they are taken.
 */
export function* takeDirtyRuns(device: BlockDevice, maxRun: number, taken?: (word: number, bits: number) => void): Generator<BlockRun> {
  let first = -1;
  let count = 0;
  for (let w = 0; w < device.dirty.length; w++) {
    if (device.dirty[w] === 0) continue;
    let bits = Atomics.exchange(device.dirty, w, 0);
    taken?.(w, bits);
    while (bits !== 0) {
      const bit = 31 - Math.clz32(bits & -bits);
      bits &= bits - 1;
      const block = w * 32 + bit;
      if (block >= device.blocks) break;
      if (count > 0 && block === first + count && count < maxRun) {
        count++;
        continue;
      }
      if (count > 0) yield { first, count };
      first = block;
      count = 1;
    }
  }
  if (count > 0) yield { first, count };
}
