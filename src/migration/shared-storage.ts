// The lease step of a switchover over shared storage (memory/types.ts, SharedStorage). The lease is
// the commit record that both processes can read: whoever holds it may run the guest, nobody else.
//
//   source:      pause ─► final pages ─► DEVICE_STATE ─► hand the lease to the destination ─► SWITCHOVER
//   destination: SWITCHOVER ─► keep the lease (renewed, not run) ─► digest, state ─► accept the lease (or refuse: not resuming) ─► resume
//   destination that will not resume (refused, failed, answered NOT_RESUMED): give it back first
//   source after a failure: resumes only if it holds the lease (it never handed it over, or got it back)
//
// The destination's name in the lease comes from the session id, which both ends know; the source's
// is its own (host, pid, a random tag), recorded in the hand-over so the lease can come back to it.

import { crashPoint } from './crash-point.js';
import type { SharedStorage } from '../memory/types.js';

/** The name a session's destination holds the lease under. */
export function destinationHolder(session: Uint8Array): string {
  return `memshift destination of session ${Buffer.from(session).toString('hex')}`;
}

/** Source, right before SWITCHOVER: the guest is paused and every page is out. */
export function handOverStorage(storage: SharedStorage | null | undefined, session: Uint8Array): void {
  if (storage == null) return;
  crashPoint('source-before-handover');
  storage.handOver(destinationHolder(session));
  crashPoint('source-after-handover');
}

/** Destination, at SWITCHOVER: the lease handed over stays ours (renewed) until we accept or give it back. */
export function keepStorage(storage: SharedStorage | null | undefined, session: Uint8Array): void {
  storage?.keep?.(destinationHolder(session));
}

/** Destination, right before the first resume: throws (not resuming) unless the lease is now ours. */
export function acceptStorage(storage: SharedStorage | null | undefined, session: Uint8Array): void {
  if (storage == null) return;
  crashPoint('destination-before-accept');
  storage.accept(destinationHolder(session));
  crashPoint('destination-after-accept');
}

/** Destination that will not resume this session: the lease goes back to the source. */
export function giveBackStorage(storage: SharedStorage | null | undefined, session: Uint8Array): void {
  if (storage == null) return;
  try {
    storage.giveBack(destinationHolder(session));
  } catch {
    // Could not write it back: nobody holds it, and nobody runs the guest; the operator breaks the lease.
  }
}
