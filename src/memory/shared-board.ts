// A board: named i32 slots in a SharedArrayBuffer that threads of one host read and write with
// Atomics (post-copy counters, the page-gate mailbox, the vCPU's control block, the encoder pool's
// controls). The slot names live with each board's owner as an `as const` object; this file only
// gives them one way to be created and waited on.
//
//   i32: [slot 0][slot 1] … [slot n-1]      each slot: Atomics.load / store / add / notify
//
// Waiting is always async here (Atomics.waitAsync), so the main thread never blocks; a vCPU that must
// block uses Atomics.wait on its own.

export type Board = Int32Array;

export function createBoard(slots: number): Board {
  return new Int32Array(new SharedArrayBuffer(4 * slots));
}

/** The board over a buffer another thread created. */
export function boardOf(buffer: SharedArrayBuffer): Board {
  return new Int32Array(buffer);
}

/**
 * Resolves once slot `index` holds something other than `from`, or after `timeoutMs`, whichever is
 * first; a notify that is missed costs at most `timeoutMs`.
 */
export async function waitForChange(board: Board, index: number, from: number, timeoutMs: number): Promise<void> {
  const w = Atomics.waitAsync(board, index, from, timeoutMs);
  if (!w.async) return;
  // A pending waitAsync does not keep the event loop alive, and its own timeout runs on a timer Node
  // does not count: were it to fire after a timer of ours that only kept the loop alive, the loop
  // would drain in between and the process (or worker) end mid-wait. Our timer ends the wait itself.
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([w.value, new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); })]);
  clearTimeout(timer);
}

/**
 * Waits until `done()` is true, re-checking whenever slot `index` changes (and at least every
 * `pollMs`), for at most `timeoutMs`. Resolves with the last `done()`.
 */
export async function waitUntil(board: Board, index: number, done: () => boolean, timeoutMs: number, pollMs = 200): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (done()) return true;
    const left = deadline - performance.now();
    if (left <= 0) return done();
    await waitForChange(board, index, Atomics.load(board, index), Math.min(pollMs, left));
  }
}
