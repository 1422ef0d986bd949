// Thread niceness for our own worker threads (Linux: setpriority on a thread id applies to that thread
// alone). During post-copy the encoder threads run at a lower priority than the fault threads and the
// vCPU, so that the bulk push yields the CPU to a blocked guest. Raising a niceness is always allowed;
// lowering it back needs privileges, so callers only ever raise it, and never touch the application's
// own (main) thread.

import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

let tid: number | null | undefined;

/** This thread's kernel id, or null where it cannot be read (not Linux). */
export function threadId(): number | null {
  if (tid === undefined) {
    try {
      tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
      if (!Number.isInteger(tid) || tid <= 0) tid = null;
    } catch {
      tid = null;
    }
  }
  return tid;
}

/** Raises this thread's niceness to at least `niceness` (best effort: ignored where unsupported). */
export function niceThisThread(niceness: number): void {
  const id = threadId();
  if (id === null) return;
  try {
    if (getPriority(id) < niceness) setPriority(id, niceness);
  } catch {
    // Not permitted or not supported: the push then simply competes at normal priority.
  }
}
