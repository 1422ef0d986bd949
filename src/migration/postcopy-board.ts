// Shared counters of a post-copy phase, read and written by the main thread and the fault thread of
// one host with Atomics (no messages on the fault path).
//
// Destination board (i32):
//   [0] MISSING    pages missing at the switchover          [1] ARRIVED   of those, pages written so far
//   [2] REQUESTED  pages requested on the urgent channel     [3] URGENT    pages written from urgent answers
//   [4] DUPLICATE  copies discarded (the page was there)     [5] STATE     0 running, 1 link lost, 2 done
//   [6] BULK       pages written from bulk pushes            [7] BULK_AT_FIRST_ANSWER  BULK when the first urgent answer was written
//   [8] CONNECTED  1 once the urgent channel is up           [9] PORT      where the fault thread listens
//
// Source board (i32):
//   [0] FAULTS_SEEN  requests received    [1] SENT_URGENT pages answered    [2] STATE 0 running, 1 link lost
//   [3] CONNECTED    1 once connected     [8 …] fault ring: [8] count, [9 + i % FAULT_RING] = region page

export const DestBoard = {
  MISSING: 0, ARRIVED: 1, REQUESTED: 2, URGENT: 3, DUPLICATE: 4, STATE: 5, BULK: 6, BULK_AT_FIRST_ANSWER: 7, CONNECTED: 8, PORT: 9,
} as const;

export const SourceBoard = { FAULTS_SEEN: 0, SENT_URGENT: 1, STATE: 2, CONNECTED: 3, RING_COUNT: 8, RING: 9 } as const;

export const BoardState = { RUNNING: 0, LINK_LOST: 1, DONE: 2 } as const;

/** Recent faults the source keeps for the push planner. */
export const FAULT_RING = 64;

export function createBoard(): SharedArrayBuffer {
  return new SharedArrayBuffer(4 * (SourceBoard.RING + FAULT_RING + 8));
}

/** The most recent fault pages in the ring written after `seen` (oldest first), and the new count. */
export function readFaultRing(board: Int32Array, seen: number): { pages: number[]; count: number } {
  const count = Atomics.load(board, SourceBoard.RING_COUNT);
  const from = Math.max(seen, count - FAULT_RING);
  const pages: number[] = [];
  for (let i = from; i < count; i++) pages.push(Atomics.load(board, SourceBoard.RING + (i % FAULT_RING)) >>> 0);
  return { pages, count };
}
