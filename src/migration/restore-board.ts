// Between a lazy restore's main thread (restore.ts) and its fault thread (restore-fault-thread.ts):
// the thread's data, its board (a stop flag and a count, read with Atomics) and its one message.

import type { Slab } from '../memory/slab.js';

export interface RestoreFaultThreadData {
  path: string;
  /** The target's page-gate mailbox (page-gate.ts). */
  mailbox: SharedArrayBuffer;
  /** Slots in RestoreBoard. */
  board: SharedArrayBuffer;
  regions: { id: number; pageSize: number; dataOffset: number; hashes: SharedArrayBuffer; slabs: Slab[] }[];
}

/** [STATE] RUNNING or DONE (the main thread ends the thread); [SERVED] pages the thread wrote. */
export const RestoreBoard = { STATE: 0, SERVED: 1, SLOTS: 2 } as const;
export const RestoreState = { RUNNING: 0, DONE: 1 } as const;

/** The thread's first failure, as data (errors cross threads as code and message). */
export type RestoreFaultMessage = { type: 'failed'; code: string; message: string; regionId?: number; page?: number };
