// The source's migration state machine: data plus one `step`. The driver (driver.ts) does all I/O
// and feeds events in; `step` decides where that leads and nothing else.
//
// ```mermaid
// stateDiagram-v2
//   [*] --> setup
//   setup --> precopy: handshake-done (live, hybrid)
//   setup --> stop_and_copy: handshake-done (cold, warm: guest already paused)
//   setup --> postcopy: handshake-done (postcopy: guest paused)
//   precopy --> precopy: iteration-done / continue, throttle
//   precopy --> stop_and_copy: iteration-done / switchover
//   precopy --> postcopy: iteration-done / postcopy
//   precopy --> aborted: iteration-done / abort
//   stop_and_copy --> awaiting_resume: switchover-sent
//   awaiting_resume --> completed: resumed
//   postcopy --> completed: postcopy-done
//   setup --> failed: failed
//   precopy --> failed: failed
//   stop_and_copy --> failed: failed
//   awaiting_resume --> in_doubt: failed (the destination may already run the guest)
//   awaiting_resume --> failed: refused (the destination said it will not resume)
//   postcopy --> postcopy_paused: failed (pages split across hosts: keep everything)
// ```
//
// The safety rule lives here: a failure before SWITCHOVER was sent leaves the destination unable to
// resume, so the source guest resumes (`failed`); a failure after it is `in-doubt` and the source guest
// stays paused, because resuming it while the destination might run the same guest would fork it.

import { ErrorCode, MemshiftError } from '../../errors.js';
import type { Decision } from '../convergence.js';

export type SourceState =
  | { kind: 'setup' }
  | { kind: 'precopy'; iteration: number }
  | { kind: 'stop-and-copy'; iteration: number }
  | { kind: 'awaiting-resume'; iteration: number }
  | { kind: 'postcopy'; iteration: number }
  | { kind: 'completed' }
  | { kind: 'aborted'; decision: Decision }
  | { kind: 'failed'; error: MemshiftError }
  | { kind: 'in-doubt'; error: MemshiftError }
  | { kind: 'postcopy-paused'; error: MemshiftError };

export type SourceEvent =
  | { type: 'handshake-done'; start: 'precopy' | 'stop-and-copy' | 'postcopy' }
  | { type: 'iteration-done'; decision: Decision }
  | { type: 'switchover-sent' }
  | { type: 'resumed' }
  | { type: 'postcopy-done' }
  | { type: 'failed'; error: MemshiftError }
  /** The destination answered the switchover with an ERROR: it did not and will not resume. */
  | { type: 'refused'; error: MemshiftError };

export function invalidTransition(state: { kind: string }, event: { type: string }): MemshiftError {
  return new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `event ${event.type} is not valid in state ${state.kind}`, { phase: state.kind });
}

function assertNever(x: never): never {
  throw new Error(`unhandled ${JSON.stringify(x)}`);
}

export function isFinal(s: SourceState): boolean {
  return s.kind === 'completed' || s.kind === 'aborted' || s.kind === 'failed' || s.kind === 'in-doubt' || s.kind === 'postcopy-paused';
}

export function stepSource(state: SourceState, event: SourceEvent): SourceState {
  if (event.type === 'refused') {
    if (state.kind === 'awaiting-resume' || state.kind === 'stop-and-copy') return { kind: 'failed', error: event.error };
    if (state.kind === 'postcopy') return { kind: 'postcopy-paused', error: event.error };
    return stepSource(state, { type: 'failed', error: event.error });
  }
  if (event.type === 'failed') {
    switch (state.kind) {
      case 'setup':
      case 'precopy':
      case 'stop-and-copy':
        return { kind: 'failed', error: event.error };
      case 'awaiting-resume':
        return { kind: 'in-doubt', error: event.error };
      case 'postcopy':
        return { kind: 'postcopy-paused', error: event.error };
      default:
        throw invalidTransition(state, event);
    }
  }
  switch (state.kind) {
    case 'setup':
      if (event.type !== 'handshake-done') throw invalidTransition(state, event);
      return event.start === 'precopy' ? { kind: 'precopy', iteration: 1 } : { kind: event.start, iteration: 1 };
    case 'precopy': {
      if (event.type !== 'iteration-done') throw invalidTransition(state, event);
      const next = state.iteration + 1;
      switch (event.decision.action) {
        case 'continue':
        case 'throttle':
          return { kind: 'precopy', iteration: next };
        case 'switchover':
          return { kind: 'stop-and-copy', iteration: next };
        case 'postcopy':
          return { kind: 'postcopy', iteration: next };
        case 'abort':
          return { kind: 'aborted', decision: event.decision };
        default:
          return assertNever(event.decision.action);
      }
    }
    case 'stop-and-copy':
      if (event.type !== 'switchover-sent') throw invalidTransition(state, event);
      return { kind: 'awaiting-resume', iteration: state.iteration };
    case 'awaiting-resume':
      if (event.type !== 'resumed') throw invalidTransition(state, event);
      return { kind: 'completed' };
    case 'postcopy':
      if (event.type !== 'postcopy-done') throw invalidTransition(state, event);
      return { kind: 'completed' };
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
