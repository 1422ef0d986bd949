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
//   switching --> resuming: resume-started (digest and device state checked)
//   resuming --> resuming: error, closed (the guest is starting: its start decides)
//   resuming --> running: resumed
//   resuming --> declining: resume-failed
//   running --> completed: complete
//   running --> awaiting_confirmation: error, closed (the guest runs here; the source may ask)
//   switching --> declining: error, closed (SWITCHOVER arrived: the source may ask)
//   awaiting_confirmation --> completed: complete (over a QUERY channel: confirmed), linger-ended (unconfirmed)
//   declining --> failed: query-answered (NOT_RESUMED sent), linger-ended
//   postcopy_switching --> postcopy_running: resumed
//   postcopy_switching --> postcopy_confirming: resumed (every page was already present)
//   postcopy_switching --> postcopy_switching: all-present (nothing was missing)
//   postcopy_running --> postcopy_confirming: all-present
//   postcopy_confirming --> completed: complete, error, closed (every page is here)
//   awaiting_hello, setup, receiving, postcopy_switching --> failed: error, closed (never resumed)
//   receiving --> reconnecting: error, closed (a link failure, with recovery on)
//   reconnecting --> receiving: recovered (the source resumes its pass with what this side lacks)
//   reconnecting --> failed: recover-ended (never resumed)
//   postcopy_running --> postcopy_recovering: error, closed (pages split across hosts: keep everything)
//   postcopy_recovering --> postcopy_running: recovered (a RECOVER channel took over; the source knows what is missing)
//   postcopy_recovering --> postcopy_recovering: error, closed (a recovery attempt's trouble is not the session's)
//   postcopy_recovering --> postcopy_paused: recover-ended (recovery off, timed out, or cancelled)
// ```
//
// The safety rule: only `resuming → running` and `postcopy_switching → postcopy_running` (or straight to
// postcopy_confirming) follow a started guest, and `switching → resuming` is taken only after the digest
// and device state checks passed, synchronously before the target's resume is called; every failure
// before it leaves the guest unstarted. Pages are accepted only where `acceptsPages` says.
//
// Lingering (stop-and-copy only; post-copy keeps its pause): once SWITCHOVER arrived, a lost link does
// not end the session at once. The source cannot tell whether we resumed, so for `confirmTimeoutMs`
// the session answers QUERY connections for its id (`queryAnswer`): `awaiting-confirmation` (the guest
// runs here) with RESUMED, then takes COMPLETE; `declining` (it never started, never will) with
// MS_ERR_NOT_RESUMED. Neither state starts or stops the guest.
//
// Reconnecting (before SWITCHOVER, recovery on): nothing runs here; for `recoverTimeoutMs` the session
// takes a RECOVER connection as its new bulk link, sends the hash of every page it holds, and the
// source resumes its pass. Recovering (post-copy): the guest runs here on the pages it has and blocks on the others; for
// `recoverTimeoutMs` the session takes a RECOVER connection for its id from the same TLS peer as its new
// bulk link (accept.ts routes it), names the pages it still lacks, and post-copy runs on.

import { ErrorCode, MemshiftError } from '../../errors.js';
import type { MigrationMode } from '../../protocol/constants.js';
import type { Switchover } from '../../protocol/control.js';

export type DestState =
  | { kind: 'awaiting-hello' }
  /** HELLO accepted; the target is being allocated. Nothing but the handshake may arrive yet. */
  | { kind: 'setup'; mode: MigrationMode }
  /**
   * `afterRecovery`: the link was recovered; the next ITERATION_END may skip numbers (the ones the lost
   * link was carrying when it died: the source had moved on to the next pass), or repeat the last one
   * (it arrived, but the source's send of it failed, so the source resumed that pass).
   */
  | { kind: 'receiving'; mode: MigrationMode; iteration: number; hasState: boolean; postcopy: boolean; missingAnnounced: boolean; afterRecovery?: true }
  /** The link was lost before SWITCHOVER (`error`): waiting for the source to reconnect and resume `resume`. */
  | { kind: 'reconnecting'; resume: Extract<DestState, { kind: 'receiving' }>; error: MemshiftError }
  /** `order`: the SWITCHOVER as the source sent it (digest to match, missing pages). */
  | { kind: 'switching'; mode: MigrationMode; order: Switchover }
  /** The checks passed and the target's resume was called: from here the guest is (being) started. */
  | { kind: 'resuming'; mode: MigrationMode }
  | { kind: 'running'; mode: MigrationMode }
  /** The guest runs here but the bulk link was lost: lingering, answering QUERY with RESUMED. */
  | { kind: 'awaiting-confirmation'; mode: MigrationMode }
  /** SWITCHOVER arrived, then the switchover failed: lingering, answering QUERY with NOT_RESUMED. */
  | { kind: 'declining'; mode: MigrationMode; error: MemshiftError }
  | { kind: 'postcopy-switching'; mode: MigrationMode; order: Switchover; allPresent: boolean }
  | { kind: 'postcopy-running'; mode: MigrationMode }
  /** Post-copy lost its link (`error`): guest held on its missing pages, waiting for the source to reconnect. */
  | { kind: 'postcopy-recovering'; mode: MigrationMode; error: MemshiftError }
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
  /** The switchover's checks passed; the target's resume is called right after this event. */
  | { type: 'resume-started' }
  | { type: 'resumed' }
  /** The target's resume threw: the guest did not start. */
  | { type: 'resume-failed'; error: MemshiftError }
  /** A QUERY was answered NOT_RESUMED: the source knows; nothing is left to linger for. */
  | { type: 'query-answered' }
  /** The confirmation timeout passed (or the wait was cancelled) while lingering. */
  | { type: 'linger-ended' }
  | { type: 'all-present' }
  /** A RECOVER channel is the bulk link now, and the source was told what is missing. */
  | { type: 'recovered' }
  /** The recovery window closed (timeout, recovery off, or cancelled) without a recovery. */
  | { type: 'recover-ended' }
  | { type: 'complete' }
  /** `recoverable`: a link failure, and recovery is on (a pass may be resumed over a new link). */
  | { type: 'closed'; error: MemshiftError; recoverable?: boolean }
  | { type: 'error'; error: MemshiftError; recoverable?: boolean };

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

/** Whether the session lingers after its link was lost, answering QUERY connections for its id. */
export function lingers(s: DestState): boolean {
  return s.kind === 'awaiting-confirmation' || s.kind === 'declining';
}

/** What a QUERY for this session is answered now: RESUMED, NOT_RESUMED, or nothing (turned away). */
export function queryAnswer(s: DestState): 'resumed' | 'not-resumed' | null {
  return s.kind === 'awaiting-confirmation' ? 'resumed' : s.kind === 'declining' ? 'not-resumed' : null;
}

/** Whether a page written now must win its claim bit (the resumed guest may have written it since). */
export function claimsPages(s: DestState): boolean {
  return s.kind === 'postcopy-running';
}

function onFailure(state: DestState, event: Extract<DestEvent, { type: 'closed' | 'error' }>): DestState {
  switch (state.kind) {
    case 'receiving':
      if (event.recoverable === true) return { kind: 'reconnecting', resume: state, error: event.error };
      return { kind: 'failed', error: event.error };
    case 'awaiting-hello':
    case 'setup':
    case 'postcopy-switching':
      return { kind: 'failed', error: event.error };
    case 'reconnecting':
      // The lost link is already gone; a reconnection attempt's trouble is not the session's.
      return state;
    case 'switching':
      // SWITCHOVER arrived: our ERROR may never reach the source, which will ask.
      return { kind: 'declining', mode: state.mode, error: event.error };
    case 'resuming':
      // The target's resume was called and cannot be taken back: its outcome decides. A lost link shows
      // when RESUMED cannot be sent (running → awaiting-confirmation).
      return state;
    case 'running':
      return { kind: 'awaiting-confirmation', mode: state.mode };
    case 'awaiting-confirmation':
    case 'declining':
      // The bulk link is gone already; a query channel's trouble is not the session's.
      return state;
    case 'postcopy-confirming':
      // The guest already runs here with every page; the source simply did not confirm its release.
      return { kind: 'completed', mode: state.mode, confirmed: false };
    case 'postcopy-running':
      return { kind: 'postcopy-recovering', mode: state.mode, error: event.error };
    case 'postcopy-recovering':
      // The lost link is already gone; a recovery attempt's trouble is not the session's.
      return state;
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
    case 'iteration-end': {
      const skipped = state.afterRecovery === true && event.iteration > state.iteration + 1;
      // The pass whose end arrived here while the source saw that send fail: it resumes and ends again.
      const again = state.afterRecovery === true && event.iteration === state.iteration;
      if (event.iteration !== state.iteration + 1 && !skipped && !again) {
        throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `iteration ${event.iteration} ended after iteration ${state.iteration}`, { phase: state.kind });
      }
      const { afterRecovery: _after, ...rest } = state;
      return { ...rest, iteration: event.iteration };
    }
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
      if (event.type !== 'resume-started') throw invalidTransition(state, event);
      return { kind: 'resuming', mode: state.mode };
    case 'resuming':
      if (event.type === 'resumed') return { kind: 'running', mode: state.mode };
      if (event.type === 'resume-failed') return { kind: 'declining', mode: state.mode, error: event.error };
      throw invalidTransition(state, event);
    case 'running':
      if (event.type !== 'complete') throw invalidTransition(state, event);
      return { kind: 'completed', mode: state.mode, confirmed: true };
    case 'awaiting-confirmation':
      if (event.type === 'complete') return { kind: 'completed', mode: state.mode, confirmed: true };
      if (event.type === 'linger-ended') return { kind: 'completed', mode: state.mode, confirmed: false };
      throw invalidTransition(state, event);
    case 'declining':
      if (event.type === 'query-answered' || event.type === 'linger-ended') return { kind: 'failed', error: state.error };
      throw invalidTransition(state, event);
    case 'postcopy-switching':
      if (event.type === 'all-present') return { ...state, allPresent: true };
      if (event.type !== 'resumed') throw invalidTransition(state, event);
      return state.allPresent ? { kind: 'postcopy-confirming', mode: state.mode } : { kind: 'postcopy-running', mode: state.mode };
    case 'postcopy-running':
      if (event.type !== 'all-present') throw invalidTransition(state, event);
      return { kind: 'postcopy-confirming', mode: state.mode };
    case 'reconnecting':
      if (event.type === 'recovered') return { ...state.resume, afterRecovery: true };
      if (event.type === 'recover-ended') return { kind: 'failed', error: state.error };
      throw invalidTransition(state, event);
    case 'postcopy-recovering':
      if (event.type === 'recovered') return { kind: 'postcopy-running', mode: state.mode };
      if (event.type === 'recover-ended') return { kind: 'postcopy-paused', error: state.error };
      throw invalidTransition(state, event);
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
