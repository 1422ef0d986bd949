// Thread niceness for our own worker threads (Linux: setpriority on a thread id applies to that thread
// alone). During post-copy the encoder threads run at a lower priority than the fault threads and the
// vCPU, so that the bulk push yields the CPU to a blocked guest; the fault threads themselves ask for a
// higher one, which only a privileged process gets. Raising a niceness is always allowed; lowering it
// needs privileges, so the encoders only ever raise theirs, and nothing touches the application's own
// (main) thread.

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

/** The post-copy fault threads' niceness, where the host lets them have it. */
export const URGENT_THREAD_NICENESS = -10;

/**
 * Lowers this thread's niceness to `niceness` (< 0: ahead of the host's ordinary threads) where the
 * process may (root, or CAP_SYS_NICE); elsewhere it stays as it is.
 */
export function favourThisThread(niceness: number): boolean {
  const id = threadId();
  if (id === null) return false;
  try {
    if (getPriority(id) > niceness) setPriority(id, niceness);
    return getPriority(id) === niceness;
  } catch {
    return false;
  }
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
