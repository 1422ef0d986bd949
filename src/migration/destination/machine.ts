// The destination's migration state machine: data plus one `step`; the driver does the I/O.
//
// ```mermaid
// stateDiagram-v2
//   [*] --> awaiting_hello
//   awaiting_hello --> receiving: hello
//   receiving --> receiving: batch, iteration-end, device-state
//   receiving --> switching: switchover (stop-and-copy)
//   receiving --> postcopy: switchover (post-copy)
//   switching --> running: resumed
//   running --> completed: complete, closed (the guest runs here either way)
//   postcopy --> completed: all-present and complete (either order)
//   awaiting_hello --> failed: error, closed
//   receiving --> failed: error, closed
//   switching --> failed: error, closed (digest or state check failed: never resumed)
//   running --> completed: error, closed (unconfirmed: the guest already runs here)
//   postcopy --> postcopy_paused: error, closed (pages split across hosts: keep everything)
// ```
//
// The safety rule: only `switching → running` starts the guest here, and only after the digest and
// device state checks passed; every failure before it leaves the guest unstarted.

import { ErrorCode, MemshiftError } from '../../errors.js';
import type { MigrationMode } from '../../protocol/constants.js';

export type DestState =
  | { kind: 'awaiting-hello' }
  | { kind: 'receiving'; mode: MigrationMode; iteration: number; hasState: boolean }
  | { kind: 'switching'; mode: MigrationMode }
  | { kind: 'running'; mode: MigrationMode }
  | { kind: 'postcopy'; mode: MigrationMode; complete: boolean; allPresent: boolean }
  | { kind: 'completed'; mode: MigrationMode; confirmed: boolean }
  | { kind: 'failed'; error: MemshiftError }
  | { kind: 'postcopy-paused'; error: MemshiftError };

export type DestEvent =
  | { type: 'hello'; mode: MigrationMode }
  | { type: 'batch' }
  | { type: 'iteration-end'; iteration: number }
  | { type: 'device-state' }
  | { type: 'switchover'; postcopy: boolean }
  | { type: 'resumed' }
  | { type: 'all-present' }
  | { type: 'complete' }
  | { type: 'closed'; error: MemshiftError }
  | { type: 'error'; error: MemshiftError };

export function invalidTransition(state: { kind: string }, event: { type: string }): MemshiftError {
  return new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `${event.type} is not valid while the destination is ${state.kind}`, { phase: state.kind });
}

function assertNever(x: never): never {
  throw new Error(`unhandled ${JSON.stringify(x)}`);
}

export function isFinalDest(s: DestState): boolean {
  return s.kind === 'completed' || s.kind === 'failed' || s.kind === 'postcopy-paused';
}

export function stepDest(state: DestState, event: DestEvent): DestState {
  if (event.type === 'error' || event.type === 'closed') {
    switch (state.kind) {
      case 'awaiting-hello':
      case 'receiving':
      case 'switching':
        return { kind: 'failed', error: event.error };
      case 'running':
        // The guest already runs here; the source simply did not confirm its release.
        return { kind: 'completed', mode: state.mode, confirmed: false };
      case 'postcopy':
        return { kind: 'postcopy-paused', error: event.error };
      default:
        throw invalidTransition(state, event);
    }
  }
  switch (state.kind) {
    case 'awaiting-hello':
      if (event.type !== 'hello') throw invalidTransition(state, event);
      return { kind: 'receiving', mode: event.mode, iteration: 0, hasState: false };
    case 'receiving':
      switch (event.type) {
        case 'batch':
          return state;
        case 'iteration-end':
          if (event.iteration !== state.iteration + 1) {
            throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `iteration ${event.iteration} ended after iteration ${state.iteration}`, { phase: state.kind });
          }
          return { ...state, iteration: event.iteration };
        case 'device-state':
          return { ...state, hasState: true };
        case 'switchover':
          if (!state.hasState) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'SWITCHOVER arrived before DEVICE_STATE', { phase: state.kind });
          return event.postcopy ? { kind: 'postcopy', mode: state.mode, complete: false, allPresent: false } : { kind: 'switching', mode: state.mode };
        default:
          throw invalidTransition(state, event);
      }
    case 'switching':
      if (event.type !== 'resumed') throw invalidTransition(state, event);
      return { kind: 'running', mode: state.mode };
    case 'running':
      if (event.type !== 'complete') throw invalidTransition(state, event);
      return { kind: 'completed', mode: state.mode, confirmed: true };
    case 'postcopy':
      if (event.type === 'batch') return state;
      if (event.type === 'all-present') return state.complete ? { kind: 'completed', mode: state.mode, confirmed: true } : { ...state, allPresent: true };
      if (event.type === 'complete') return state.allPresent ? { kind: 'completed', mode: state.mode, confirmed: true } : { ...state, complete: true };
      throw invalidTransition(state, event);
    case 'completed':
    case 'failed':
    case 'postcopy-paused':
      throw invalidTransition(state, event);
    default:
      return assertNever(state);
  }
}
