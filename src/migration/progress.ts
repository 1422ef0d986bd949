// Progress events both drivers emit, at most every PROGRESS_INTERVAL_MS and at every phase change.

export interface Progress {
  role: 'source' | 'destination';
  phase: string;
  iteration: number;
  /** Pages still to send in this pass plus those dirtied since (source); pages received (destination). */
  remainingPages: number;
  pagesReceived?: number;
  /** Pages per second the guest dirties. */
  dirtyPagesPerSec: number;
  /** Bytes per second on the wire. */
  bandwidthBytesPerSec: number;
  expectedDowntimeMs: number;
  /**
   * Source: ms still to go until the migration completes, counted down from the last estimate (eta.ts);
   * null when there is no finite estimate; absent before the first pass ended.
   */
  etaMs?: number | null;
  bytesTransferred: number;
  elapsedMs: number;
  throttlePercent: number;
  faults?: number;
  pagesPushed?: number;
  pagesRequested?: number;
}

export const PROGRESS_INTERVAL_MS = 100;

/** Calls `emit` at most every interval, plus whenever `force` is set. */
export function throttledProgress(emit: ((p: Progress) => void) | undefined): (p: () => Progress, force?: boolean) => void {
  let last = 0;
  return (make, force = false) => {
    if (emit === undefined) return;
    const now = performance.now();
    if (!force && now - last < PROGRESS_INTERVAL_MS) return;
    last = now;
    try {
      emit(make());
    } catch {
      // A consumer's failure is its own (as with onEvent): the migration goes on.
    }
  };
}
