// Shared counters of a post-copy phase, read and written by the main thread and the fault thread of
// one host with Atomics (no messages on the fault path). Boards are shared-board.ts boards; control
// events (connected, link lost, every page present) travel as worker messages, off the fault path.
//
// Destination board (i32):
//   [0] MISSING    pages missing at the switchover          [1] ARRIVED   of those, pages written so far
//   [2] REQUESTED  pages requested on the urgent channel     [3] URGENT    pages written from urgent answers
//   [4] DUPLICATE  copies discarded (the page was there)     [5] STATE     0 running, 1 link lost, 2 done
//   [6] BULK       pages written from bulk pushes            [7] BULK_AT_FIRST_ANSWER  BULK when the first urgent answer was written
//   [8] BLOCK_FAULTS  disk blocks requested (POSTCOPY_BLOCKS)
//
// Source board (i32):
//   [0] FAULTS_SEEN  requests received    [1] SENT_URGENT pages answered    [2] STATE 0 running, 1 link lost, 2 done
//   [8] RING_COUNT   faults in the ring   [9 + 2 (i % FAULT_RING)] = region id, [+1] = region page

import { Worker, parentPort, workerData } from 'node:worker_threads';
import { createBoard, type Board } from '../memory/shared-board.js';

export const DestBoard = {
  MISSING: 0, ARRIVED: 1, REQUESTED: 2, URGENT: 3, DUPLICATE: 4, STATE: 5, BULK: 6, BULK_AT_FIRST_ANSWER: 7, BLOCK_FAULTS: 8, SLOTS: 9,
} as const;

export const SourceBoard = { FAULTS_SEEN: 0, SENT_URGENT: 1, STATE: 2, RING_COUNT: 8, RING: 9 } as const;

export const BoardState = { RUNNING: 0, LINK_LOST: 1, DONE: 2 } as const;

/** Recent faults the source keeps for the push planner. */
export const FAULT_RING = 64;

export function createDestBoard(): Board {
  return createBoard(DestBoard.SLOTS);
}

export function createSourceBoard(): Board {
  return createBoard(SourceBoard.RING + 2 * FAULT_RING);
}

/** A fault the destination's vCPU took, as the source saw it requested. */
export interface Fault {
  regionId: number;
  page: number;
}

/** Appends a fault to the source's ring (fault thread only: it is the ring's one writer). */
export function recordFault(board: Board, fault: Fault): void {
  const n = Atomics.load(board, SourceBoard.RING_COUNT);
  const at = SourceBoard.RING + 2 * (n % FAULT_RING);
  Atomics.store(board, at, fault.regionId);
  Atomics.store(board, at + 1, fault.page | 0);
  Atomics.store(board, SourceBoard.RING_COUNT, n + 1);
}

/** The faults in the ring written after `seen` (oldest first; at most FAULT_RING), and the new count. */
export function readFaultRing(board: Board, seen: number): { faults: Fault[]; count: number } {
  const count = Atomics.load(board, SourceBoard.RING_COUNT);
  const from = Math.max(seen, count - FAULT_RING);
  const faults: Fault[] = [];
  for (let i = from; i < count; i++) {
    const at = SourceBoard.RING + 2 * (i % FAULT_RING);
    faults.push({ regionId: Atomics.load(board, at), page: Atomics.load(board, at + 1) >>> 0 });
  }
  return { faults, count };
}

/** What a fault thread tells its main thread, as a worker message. */
export type FaultThreadMessage =
  | { type: 'listening'; port: number }
  | { type: 'connected' }
  | { type: 'all-present' }
  | { type: 'link-lost'; code: string; message: string }
  /** Source: the destination's guest faulted on disk blocks [block, block + count) of region DISK_REGION_BASE + disk (its main thread answers). */
  | { type: 'block-fault'; regionId: number; block: number; count: number };

/** How long a stopped fault thread may take to leave its loop before it is terminated. */
const STOP_GRACE_MS = 1000;

/**
 * Waits for a fault thread to exit. One that never got its peer (still waiting for the urgent
 * connection) is not in its loop and would never see the board: it is terminated after a grace.
 */
export async function endThread(worker: Worker, exited: boolean): Promise<void> {
  if (exited) return;
  const gone = new Promise((resolve) => worker.once('exit', resolve));
  const timer = setTimeout(() => void worker.terminate(), STOP_GRACE_MS);
  await gone;
  clearTimeout(timer);
}

/**
 * A fault thread loaded ahead of its migration (~50 ms of module loading here): it waits for
 * `startFaultThread` to hand it its data. Until then it must not keep the process alive on its own,
 * nor take it down if it fails to load (whoever starts it then sees it gone).
 */
export function warmFaultThread(module: URL): Worker {
  const worker = new Worker(module);
  worker.unref();
  worker.on('error', () => undefined);
  return worker;
}

/** Runs the fault thread `module` on `data`: hands it to `warm` (a warmFaultThread) or starts a new one. */
export function startFaultThread(module: URL, data: unknown, warm?: Worker): Worker {
  if (warm === undefined) return new Worker(module, { workerData: data });
  warm.ref();
  warm.postMessage(data);
  return warm;
}

/** In a fault thread: its data, from workerData, or for a warm thread its first message. */
export async function faultThreadData<T>(): Promise<T> {
  return (workerData ?? await new Promise((resolve) => parentPort!.once('message', resolve))) as T;
}
