// The source's migration state machine: data plus one `step`. Each state carries what its phase
// needs; the driver (driver.ts) runs the phase of the current state (phases/*.ts, all the I/O) and
// feeds the event it returns back in. `step` alone decides what comes next: which phase a mode starts
// in, when pre-copy ends, and what a failure means for the guest.
//
// ```mermaid
// stateDiagram-v2
//   [*] --> setup
//   setup --> precopy: handshake-done (live, hybrid)
//   setup --> stop_and_copy: handshake-done (cold, warm: one pass, guest paused)
//   setup --> postcopy_switching: handshake-done (postcopy)
//   precopy --> precopy: iteration-done / continue, throttle
//   precopy --> stop_and_copy: iteration-done / switchover
//   precopy --> postcopy_switching: iteration-done / postcopy (only if negotiated)
//   precopy --> aborted: iteration-done / abort
//   stop_and_copy --> awaiting_resume: switchover-sent
//   awaiting_resume --> releasing: resumed
//   postcopy_switching --> postcopy_switching: switchover-sent
//   postcopy_switching --> postcopy_running: resumed
//   postcopy_running --> releasing: postcopy-done
//   releasing --> completed: released, failed, refused (RESUMED arrived: the guest runs on the destination either way)
//   setup, precopy, stop_and_copy --> failed: failed, refused
//   precopy, stop_and_copy --> reconnecting: failed, refused (a link failure, with recovery on)
//   reconnecting --> precopy, stop_and_copy: recovered (the same pass goes on, with what the destination lacks)
//   reconnecting --> failed: failed, refused (recovery timed out or cancelled)
//   postcopy_switching --> failed: failed before SWITCHOVER was sent, refused
//   postcopy_switching --> in_doubt: failed after SWITCHOVER was sent
//   awaiting_resume --> resolving: failed (the link was lost: ask the destination over a new connection)
//   awaiting_resume --> in_doubt: failed (cancelled, or RESUMED with another digest: asking again cannot help)
//   awaiting_resume --> failed: refused (the destination said it will not resume)
//   resolving --> releasing: resumed (answered RESUMED over a QUERY channel, digest verified)
//   resolving --> failed: not-resumed (answered MS_ERR_NOT_RESUMED)
//   resolving --> in_doubt: failed, refused (no answer within resolveTimeoutMs, cancelled)
//   postcopy_running --> postcopy_recovering: failed, refused (pages split across hosts: keep everything)
//   postcopy_recovering --> postcopy_running: recovered (a new link; the destination named what it lacks)
//   postcopy_recovering --> postcopy_paused: failed, refused (recovery off, timed out or cancelled)
// ```
//
// The safety rule lives here: until SWITCHOVER is sent the destination cannot resume, so a failure
// resumes the source guest (`failed`); once it is sent, a lost link leaves the switchover `in-doubt`
// and the source guest stays paused, because resuming it while the destination might run the same
// guest would fork it. An explicit refusal (an ERROR frame before RESUMED) is certain: `failed`.
// After a stop-and-copy SWITCHOVER the doubt is first taken to the destination (`resolving`): it
// lingers after losing the link and says over a QUERY connection whether it resumed; only without an
// answer does the switchover stay `in-doubt`. Post-copy does not ask: its pause keeps every page, and
// with recovery on (recoverTimeoutMs) the source reconnects and pushes what the destination lacks.

import { ErrorCode, MemshiftError } from '../../errors.js';
import type { MigrationMode } from '../../protocol/constants.js';
import type { Decision } from '../convergence.js';

/** What the source knows once SWITCHOVER is out: when the guest stopped, what the downtime went on so far, and the digest it announced. */
export interface SwitchoverSent {
  pausedAt: number;
  pauseMs: number;
  finalPagesMs: number;
  finalPages: number;
  deviceStateMs: number;
  digest: bigint;
}

export type SourceState =
  | { kind: 'setup' }
  /** `again`: the pass resumes after a reconnection; its snapshot already holds what is left to send. */
  | { kind: 'precopy'; iteration: number; postcopyReady: boolean; throttlePercent: number; remainingHistory: readonly number[]; again?: true }
  /** `singlePass`: cold and warm send all memory once, paused, with nothing synced before. */
  | { kind: 'stop-and-copy'; iteration: number; singlePass: boolean; again?: true }
  /** A pass lost its link (`error`), before SWITCHOVER: reconnecting to resume it (`resume`). */
  | { kind: 'reconnecting'; resume: Interruptible; error: MemshiftError }
  | { kind: 'awaiting-resume'; iteration: number; sent: SwitchoverSent }
  /** The link was lost after SWITCHOVER (`error`): asking the destination whether it resumed; guest paused. */
  | { kind: 'resolving'; iteration: number; sent: SwitchoverSent; error: MemshiftError }
  /** Paused; missing pages, device state and SWITCHOVER go out (`sent` then set), then RESUMED is awaited. */
  | { kind: 'postcopy-switching'; iteration: number; sent: SwitchoverSent | null }
  /** The destination runs the guest; the rest of memory is pushed and fetched on faults. */
  | { kind: 'postcopy-running'; iteration: number }
  /** Post-copy lost its link (`error`); guest paused here, every page kept: reconnecting, if allowed. */
  | { kind: 'postcopy-recovering'; iteration: number; error: MemshiftError }
  /** The destination runs the guest: release ours and confirm. */
  | { kind: 'releasing' }
  | { kind: 'completed'; confirmed: boolean }
  | { kind: 'aborted'; decision: Decision }
  | { kind: 'failed'; error: MemshiftError }
  | { kind: 'in-doubt'; error: MemshiftError }
  | { kind: 'postcopy-paused'; error: MemshiftError };

/** The states whose pass a lost link may interrupt and a reconnection resume. */
export type Interruptible = Extract<SourceState, { kind: 'precopy' | 'stop-and-copy' }>;

export type SourceEvent =
  | { type: 'handshake-done'; mode: MigrationMode; postcopy: boolean }
  /** A pre-copy pass ended with `remaining` pages dirty; the policy decided. */
  | { type: 'iteration-done'; decision: Decision; remaining: number }
  | { type: 'switchover-sent'; sent: SwitchoverSent }
  | { type: 'resumed' }
  | { type: 'postcopy-done' }
  /** Post-copy is connected again: the pages the destination lacks are the ones left to push. */
  | { type: 'recovered' }
  | { type: 'released' }
  /** Answered over a QUERY channel: the destination did not resume the session and never will. */
  | { type: 'not-resumed'; error: MemshiftError }
  /** `recoverable`: a link failure, and recovery is on (a pass may reconnect instead of failing). */
  | { type: 'failed'; error: MemshiftError; recoverable?: boolean }
  /**
   * The destination answered with an ERROR before resuming: it did not and will not run the guest.
   * `recoverable`: its error was a link failure and recovery is on: it waits for a reconnection.
   */
  | { type: 'refused'; error: MemshiftError; recoverable?: boolean };

export function invalidTransition(state: { kind: string }, event: { type: string }): MemshiftError {
  return new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `event ${event.type} is not valid in state ${state.kind}`, { phase: state.kind });
}

function assertNever(x: never): never {
  throw new Error(`unhandled ${JSON.stringify(x)}`);
}

export function isFinal(s: SourceState): boolean {
  return s.kind === 'completed' || s.kind === 'aborted' || s.kind === 'failed' || s.kind === 'in-doubt' || s.kind === 'postcopy-paused';
}

/**
 * Of the final states, those in which the destination may run the guest: the source copy must stay
 * paused. In the others (failed, aborted) it never could, and the source guest resumes.
 */
export function destinationMayRun(s: SourceState): boolean {
  return s.kind === 'in-doubt' || s.kind === 'postcopy-paused' || s.kind === 'completed';
}

function onFailure(state: SourceState, event: Extract<SourceEvent, { type: 'failed' | 'refused' }>): SourceState {
  const refused = event.type === 'refused';
  switch (state.kind) {
    case 'precopy':
    case 'stop-and-copy':
      if (event.recoverable === true) return { kind: 'reconnecting', resume: state, error: event.error };
      return { kind: 'failed', error: event.error };
    case 'setup':
    case 'reconnecting':
      return { kind: 'failed', error: event.error };
    case 'postcopy-switching':
      return refused || state.sent === null ? { kind: 'failed', error: event.error } : { kind: 'in-doubt', error: event.error };
    case 'awaiting-resume':
      if (refused) return { kind: 'failed', error: event.error };
      return askable(event.error) ? { kind: 'resolving', iteration: state.iteration, sent: state.sent, error: event.error } : { kind: 'in-doubt', error: event.error };
    case 'resolving':
      // No answer (or one that is not NOT_RESUMED) within the timeout, or cancelled: still in doubt.
      return { kind: 'in-doubt', error: event.error };
    case 'postcopy-running':
      return { kind: 'postcopy-recovering', iteration: state.iteration, error: event.error };
    case 'postcopy-recovering':
      // The first loss is the one that paused post-copy; why recovery gave up is in its message.
      return { kind: 'postcopy-paused', error: event.error };
    case 'releasing':
      // RESUMED arrived: the guest runs there; only our confirmation was lost.
      return { kind: 'completed', confirmed: false };
    case 'completed':
    case 'aborted':
    case 'failed':
    case 'in-doubt':
    case 'postcopy-paused':
      throw invalidTransition(state, event);
    default:
      return assertNever(state);
  }
}

/**
 * Whether a failure while awaiting RESUMED is worth asking the destination about: a lost or silent
 * link is; a cancel is not (the caller wants out now), nor a RESUMED with another digest (the
 * destination answered; asking again gets the same answer).
 */
function askable(error: MemshiftError): boolean {
  return error.code !== ErrorCode.CANCELLED && error.code !== ErrorCode.DIGEST_MISMATCH;
}

function startPhase(mode: MigrationMode, postcopy: boolean): SourceState {
  switch (mode) {
    case 'cold':
    case 'warm':
      return { kind: 'stop-and-copy', iteration: 1, singlePass: true };
    case 'postcopy':
      if (!postcopy) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'a post-copy migration needs post-copy on both ends');
      return { kind: 'postcopy-switching', iteration: 1, sent: null };
    case 'live':
    case 'hybrid':
      if (mode === 'hybrid' && !postcopy) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'a hybrid migration needs post-copy on both ends');
      return { kind: 'precopy', iteration: 1, postcopyReady: postcopy, throttlePercent: 0, remainingHistory: [] };
    default:
      return assertNever(mode);
  }
}

function afterPass(resumed: Extract<SourceState, { kind: 'precopy' }>, event: Extract<SourceEvent, { type: 'iteration-done' }>): SourceState {
  // The pass that resumed after a reconnection is over: the next one starts as any other.
  const { again: _again, ...state } = resumed;
  const next = state.iteration + 1;
  const d = event.decision;
  switch (d.action) {
    case 'continue':
      return { ...state, iteration: next, remainingHistory: [...state.remainingHistory, event.remaining] };
    case 'throttle':
      return { ...state, iteration: next, remainingHistory: [...state.remainingHistory, event.remaining], throttlePercent: d.throttlePercent ?? state.throttlePercent };
    case 'switchover':
      return { kind: 'stop-and-copy', iteration: next, singlePass: false };
    case 'postcopy':
      if (!state.postcopyReady) {
        throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `the policy chose post-copy (${d.rule}) but post-copy was not negotiated`, { phase: state.kind });
      }
      return { kind: 'postcopy-switching', iteration: next, sent: null };
    case 'abort':
      return { kind: 'aborted', decision: d };
    default:
      return assertNever(d.action);
  }
}

export function stepSource(state: SourceState, event: SourceEvent): SourceState {
  if (event.type === 'failed' || event.type === 'refused') return onFailure(state, event);
  switch (state.kind) {
    case 'setup':
      if (event.type !== 'handshake-done') throw invalidTransition(state, event);
      return startPhase(event.mode, event.postcopy);
    case 'precopy':
      if (event.type !== 'iteration-done') throw invalidTransition(state, event);
      return afterPass(state, event);
    case 'reconnecting':
      if (event.type !== 'recovered') throw invalidTransition(state, event);
      return { ...state.resume, again: true };
    case 'stop-and-copy':
      if (event.type !== 'switchover-sent') throw invalidTransition(state, event);
      return { kind: 'awaiting-resume', iteration: state.iteration, sent: event.sent };
    case 'awaiting-resume':
      if (event.type !== 'resumed') throw invalidTransition(state, event);
      return { kind: 'releasing' };
    case 'resolving':
      if (event.type === 'resumed') return { kind: 'releasing' };
      if (event.type === 'not-resumed') return { kind: 'failed', error: event.error };
      throw invalidTransition(state, event);
    case 'postcopy-switching':
      if (event.type === 'switchover-sent' && state.sent === null) return { ...state, sent: event.sent };
      if (event.type === 'resumed' && state.sent !== null) return { kind: 'postcopy-running', iteration: state.iteration };
      throw invalidTransition(state, event);
    case 'postcopy-running':
      if (event.type !== 'postcopy-done') throw invalidTransition(state, event);
      return { kind: 'releasing' };
    case 'postcopy-recovering':
      if (event.type !== 'recovered') throw invalidTransition(state, event);
      return { kind: 'postcopy-running', iteration: state.iteration + 1 };
    case 'releasing':
      if (event.type !== 'released') throw invalidTransition(state, event);
      return { kind: 'completed', confirmed: true };
    case 'completed':
    case 'aborted':
    case 'failed':
    case 'in-doubt':
    case 'postcopy-paused':
      throw invalidTransition(state, event);
    default:
      return assertNever(state);
  }
}
