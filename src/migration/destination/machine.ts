// The destination's migration state machine: data plus one `step`; the driver (driver.ts) turns
// frames, phase completions and fault-thread messages into events and runs each state's phase
// (phases/*.ts) when the machine enters it. What the source may send when, and what a failure means
// for the guest here, is decided in this file only.
//
// ```mermaid
// stateDiagram-v2
//   [*] --> awaiting_hello
//   awaiting_hello --> setup: hello
//   setup --> receiving: ready (target allocated, HELLO_ACK sent)
//   receiving --> receiving: iteration-end, device-state, missing-pages (post-copy negotiated)
//   receiving --> switching: switchover (stop-and-copy)
//   receiving --> postcopy_switching: switchover (post-copy negotiated, missing pages announced)
//   switching --> running: resumed
//   running --> completed: complete, error, closed (the guest runs here either way)
//   postcopy_switching --> postcopy_running: resumed
//   postcopy_switching --> postcopy_confirming: resumed (every page was already present)
//   postcopy_switching --> postcopy_switching: all-present (nothing was missing)
//   postcopy_running --> postcopy_confirming: all-present
//   postcopy_confirming --> completed: complete, error, closed (every page is here)
//   awaiting_hello, setup, receiving, switching, postcopy_switching --> failed: error, closed (never resumed)
//   postcopy_running --> postcopy_paused: error, closed (pages split across hosts: keep everything)
// ```
//
// The safety rule: only `switching → running` and `postcopy_switching → postcopy_running` (or straight to
// postcopy_confirming) start the guest here, and only after the digest and device state checks passed; every failure before them
// leaves the guest unstarted. Pages are accepted only where `acceptsPages` says.

import { ErrorCode, MemshiftError } from '../../errors.js';
import type { MigrationMode } from '../../protocol/constants.js';
import type { Switchover } from '../../protocol/control.js';

export type DestState =
  | { kind: 'awaiting-hello' }
  /** HELLO accepted; the target is being allocated. Nothing but the handshake may arrive yet. */
  | { kind: 'setup'; mode: MigrationMode }
  | { kind: 'receiving'; mode: MigrationMode; iteration: number; hasState: boolean; postcopy: boolean; missingAnnounced: boolean }
  /** `order`: the SWITCHOVER as the source sent it (digest to match, missing pages). */
  | { kind: 'switching'; mode: MigrationMode; order: Switchover }
  | { kind: 'running'; mode: MigrationMode }
  | { kind: 'postcopy-switching'; mode: MigrationMode; order: Switchover; allPresent: boolean }
  | { kind: 'postcopy-running'; mode: MigrationMode }
  /** Every page is here; POSTCOPY_DONE goes out and COMPLETE is awaited. */
  | { kind: 'postcopy-confirming'; mode: MigrationMode }
  | { kind: 'completed'; mode: MigrationMode; confirmed: boolean }
  | { kind: 'failed'; error: MemshiftError }
  | { kind: 'postcopy-paused'; error: MemshiftError };

export type DestEvent =
  | { type: 'hello'; mode: MigrationMode }
  | { type: 'ready'; postcopy: boolean }
  | { type: 'iteration-end'; iteration: number }
  | { type: 'device-state' }
  | { type: 'missing-pages' }
  | { type: 'switchover'; postcopy: boolean; order: Switchover }
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

/**
 * Whether a PAGE_BATCH may be applied now: while receiving, and in post-copy once the guest runs.
 * Anything else (before HELLO_ACK, during a switchover, after completion) is a protocol error.
 */
export function acceptsPages(s: DestState): boolean {
  return s.kind === 'receiving' || s.kind === 'postcopy-running';
}

/**
 * Whether the source is due to send now: between HELLO_ACK and SWITCHOVER, and during post-copy. A
 * silence then is a stalled or broken peer (a frame length that lies, a frozen process), not a pause.
 */
export function awaitsSource(s: DestState): boolean {
  return s.kind === 'receiving' || s.kind === 'postcopy-running';
}

/** Whether a page written now must win its claim bit (the resumed guest may have written it since). */
export function claimsPages(s: DestState): boolean {
  return s.kind === 'postcopy-running';
}

function onFailure(state: DestState, event: { type: 'closed' | 'error'; error: MemshiftError }): DestState {
  switch (state.kind) {
    case 'awaiting-hello':
    case 'setup':
    case 'receiving':
    case 'switching':
    case 'postcopy-switching':
      return { kind: 'failed', error: event.error };
    case 'running':
    case 'postcopy-confirming':
      // The guest already runs here with every page; the source simply did not confirm its release.
      return { kind: 'completed', mode: state.mode, confirmed: false };
    case 'postcopy-running':
      return { kind: 'postcopy-paused', error: event.error };
    case 'completed':
    case 'failed':
    case 'postcopy-paused':
      throw invalidTransition(state, event);
    default:
      return assertNever(state);
  }
}

function receive(state: Extract<DestState, { kind: 'receiving' }>, event: DestEvent): DestState {
  switch (event.type) {
    case 'iteration-end':
      if (event.iteration !== state.iteration + 1) {
        throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `iteration ${event.iteration} ended after iteration ${state.iteration}`, { phase: state.kind });
      }
      return { ...state, iteration: event.iteration };
    case 'device-state':
      return { ...state, hasState: true };
    case 'missing-pages':
      if (!state.postcopy) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'MISSING_PAGES outside a post-copy switchover', { phase: state.kind });
      return { ...state, missingAnnounced: true };
    case 'switchover':
      if (!state.hasState) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'SWITCHOVER arrived before DEVICE_STATE', { phase: state.kind });
      if (!event.postcopy) return { kind: 'switching', mode: state.mode, order: event.order };
      if (!state.postcopy) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'post-copy SWITCHOVER without a negotiated post-copy', { phase: state.kind });
      if (!state.missingAnnounced) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'post-copy SWITCHOVER before MISSING_PAGES', { phase: state.kind });
      return { kind: 'postcopy-switching', mode: state.mode, order: event.order, allPresent: false };
    default:
      throw invalidTransition(state, event);
  }
}

export function stepDest(state: DestState, event: DestEvent): DestState {
  if (event.type === 'error' || event.type === 'closed') return onFailure(state, event);
  switch (state.kind) {
    case 'awaiting-hello':
      if (event.type !== 'hello') throw invalidTransition(state, event);
      return { kind: 'setup', mode: event.mode };
    case 'setup':
      if (event.type !== 'ready') throw invalidTransition(state, event);
      return { kind: 'receiving', mode: state.mode, iteration: 0, hasState: false, postcopy: event.postcopy, missingAnnounced: false };
    case 'receiving':
      return receive(state, event);
    case 'switching':
      if (event.type !== 'resumed') throw invalidTransition(state, event);
      return { kind: 'running', mode: state.mode };
    case 'running':
      if (event.type !== 'complete') throw invalidTransition(state, event);
      return { kind: 'completed', mode: state.mode, confirmed: true };
    case 'postcopy-switching':
      if (event.type === 'all-present') return { ...state, allPresent: true };
      if (event.type !== 'resumed') throw invalidTransition(state, event);
      return state.allPresent ? { kind: 'postcopy-confirming', mode: state.mode } : { kind: 'postcopy-running', mode: state.mode };
    case 'postcopy-running':
      if (event.type !== 'all-present') throw invalidTransition(state, event);
      return { kind: 'postcopy-confirming', mode: state.mode };
    case 'postcopy-confirming':
      if (event.type !== 'complete') throw invalidTransition(state, event);
      return { kind: 'completed', mode: state.mode, confirmed: true };
    case 'completed':
    case 'failed':
    case 'postcopy-paused':
      throw invalidTransition(state, event);
    default:
      return assertNever(state);
  }
}
