// destination machine: stepDest as a table, like the source's. Valid pairs list the state they lead
// to (by `kind` and every field); every other pair of the product throws MS_ERR_UNEXPECTED_MESSAGE
// naming both. Guards inside valid pairs (consecutive ITERATION_END, MISSING_PAGES only with
// post-copy, DEVICE_STATE before SWITCHOVER, a post-copy SWITCHOVER only when negotiated and after
// MISSING_PAGES) get their own tests and messages. The safety rule — only resume-started in switching
// (then resumed in resuming) or a RESUMED in postcopy-switching starts the guest here — is checked over
// the whole product, and so are the lingering states that answer a source's QUERY after a lost link.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode, MemshiftError } from '../../src/errors.js';
import { MIGRATION_MODES, SwitchoverMode } from '../../src/protocol/constants.js';
import type { Switchover } from '../../src/protocol/control.js';
import {
  acceptsPages, claimsPages, isFinalDest, lingers, queryAnswer, stepDest, type DestEvent, type DestState,
} from '../../src/migration/destination/machine.js';
import { expectCode } from '../_support/guest-helpers.js';

const UNEXPECTED = 'MS_ERR_UNEXPECTED_MESSAGE';
const CLOSED = new MemshiftError(ErrorCode.CONNECTION_CLOSED, 'source closed');
const FAILED = new MemshiftError(ErrorCode.DIGEST_MISMATCH, 'digest differs');
const RESUME_FAILED = new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'vCPU would not start');

// SWITCHOVER orders as the source sends them: one stop-and-copy, one post-copy (pages still missing).
const ORDER_STOP: Switchover = { mode: SwitchoverMode.STOP_AND_COPY, iterations: 3, digest: 0x1234n, guestSteps: 99, pagesSent: 4096, missingPages: 0 };
const ORDER_POSTCOPY: Switchover = { mode: SwitchoverMode.POSTCOPY, iterations: 2, digest: 0x5678n, guestSteps: 50, pagesSent: 1000, missingPages: 300 };

const receiving = (mode: 'live' | 'warm' | 'hybrid', flags: { hasState?: boolean; postcopy?: boolean; missingAnnounced?: boolean }) =>
  ({ kind: 'receiving', mode, iteration: 2, hasState: false, postcopy: false, missingAnnounced: false, ...flags }) as const;

// One instance of every state, and of each flag combination that changes what is valid.
const STATES = {
  'awaiting-hello': { kind: 'awaiting-hello' },
  setup: { kind: 'setup', mode: 'hybrid' },
  receiving: receiving('live', {}),
  'receiving+state': receiving('warm', { hasState: true }),
  'receiving+postcopy': receiving('hybrid', { postcopy: true }),
  'receiving+postcopy+state': receiving('hybrid', { postcopy: true, hasState: true }),
  'receiving+postcopy+missing': receiving('hybrid', { postcopy: true, missingAnnounced: true }),
  'receiving+postcopy+state+missing': receiving('hybrid', { postcopy: true, hasState: true, missingAnnounced: true }),
  switching: { kind: 'switching', mode: 'live', order: ORDER_STOP },
  resuming: { kind: 'resuming', mode: 'live' },
  running: { kind: 'running', mode: 'live' },
  'awaiting-confirmation': { kind: 'awaiting-confirmation', mode: 'live' },
  declining: { kind: 'declining', mode: 'live', error: FAILED },
  'postcopy-switching': { kind: 'postcopy-switching', mode: 'hybrid', order: ORDER_POSTCOPY, allPresent: false },
  'postcopy-switching+all-present': { kind: 'postcopy-switching', mode: 'hybrid', order: ORDER_POSTCOPY, allPresent: true },
  'postcopy-running': { kind: 'postcopy-running', mode: 'hybrid' },
  'postcopy-recovering': { kind: 'postcopy-recovering', mode: 'hybrid', error: CLOSED },
  reconnecting: { kind: 'reconnecting', resume: receiving('live', { hasState: true }), error: CLOSED },
  'postcopy-confirming': { kind: 'postcopy-confirming', mode: 'hybrid' },
  completed: { kind: 'completed', mode: 'live', confirmed: true },
  failed: { kind: 'failed', error: FAILED },
  'postcopy-paused': { kind: 'postcopy-paused', error: CLOSED },
} satisfies Record<string, DestState>;
type StateName = keyof typeof STATES;

// Event variants. iteration-end is "the next one" for the state it is sent to (1 when there is none).
const EVENTS = {
  hello: () => ({ type: 'hello', mode: 'postcopy' }),
  ready: () => ({ type: 'ready', postcopy: false }),
  'ready+postcopy': () => ({ type: 'ready', postcopy: true }),
  'iteration-end': (s: DestState) => ({ type: 'iteration-end', iteration: s.kind === 'receiving' ? s.iteration + 1 : 1 }),
  'device-state': () => ({ type: 'device-state' }),
  'missing-pages': () => ({ type: 'missing-pages' }),
  'switchover/stop-and-copy': () => ({ type: 'switchover', postcopy: false, order: ORDER_STOP }),
  'switchover/postcopy': () => ({ type: 'switchover', postcopy: true, order: ORDER_POSTCOPY }),
  'resume-started': () => ({ type: 'resume-started' }),
  resumed: () => ({ type: 'resumed' }),
  'resume-failed': () => ({ type: 'resume-failed', error: RESUME_FAILED }),
  'query-answered': () => ({ type: 'query-answered' }),
  'linger-ended': () => ({ type: 'linger-ended' }),
  'all-present': () => ({ type: 'all-present' }),
  recovered: () => ({ type: 'recovered' }),
  'recover-ended': () => ({ type: 'recover-ended' }),
  complete: () => ({ type: 'complete' }),
  closed: () => ({ type: 'closed', error: CLOSED }),
  error: () => ({ type: 'error', error: FAILED }),
  'closed/link': () => ({ type: 'closed', error: CLOSED, recoverable: true }),
  'error/link': () => ({ type: 'error', error: FAILED, recoverable: true }),
} satisfies Record<string, (s: DestState) => DestEvent>;
type EventName = keyof typeof EVENTS;

const FAILURE_ROWS = (name: StateName, closed: DestState, error: DestState): [StateName, EventName, DestState][] => [
  [name, 'closed', closed],
  [name, 'error', error],
];
const NEVER_RESUMED = (name: StateName) => FAILURE_ROWS(name, { kind: 'failed', error: CLOSED }, { kind: 'failed', error: FAILED });

const BASE_VALID: [StateName, EventName, DestState][] = [
  ['awaiting-hello', 'hello', { kind: 'setup', mode: 'postcopy' }],
  ...NEVER_RESUMED('awaiting-hello'),
  ['setup', 'ready', { kind: 'receiving', mode: 'hybrid', iteration: 0, hasState: false, postcopy: false, missingAnnounced: false }],
  ['setup', 'ready+postcopy', { kind: 'receiving', mode: 'hybrid', iteration: 0, hasState: false, postcopy: true, missingAnnounced: false }],
  ...NEVER_RESUMED('setup'),
  // receiving, no post-copy: MISSING_PAGES and a post-copy SWITCHOVER are guarded (below).
  ['receiving', 'iteration-end', { ...STATES.receiving, iteration: 3 }],
  ['receiving', 'device-state', { ...STATES.receiving, hasState: true }],
  ...NEVER_RESUMED('receiving'),
  ['receiving+state', 'iteration-end', { ...STATES['receiving+state'], iteration: 3 }],
  ['receiving+state', 'device-state', STATES['receiving+state']],
  ['receiving+state', 'switchover/stop-and-copy', { kind: 'switching', mode: 'warm', order: ORDER_STOP }],
  ...NEVER_RESUMED('receiving+state'),
  // receiving with post-copy negotiated.
  ['receiving+postcopy', 'iteration-end', { ...STATES['receiving+postcopy'], iteration: 3 }],
  ['receiving+postcopy', 'device-state', { ...STATES['receiving+postcopy'], hasState: true }],
  ['receiving+postcopy', 'missing-pages', { ...STATES['receiving+postcopy'], missingAnnounced: true }],
  ...NEVER_RESUMED('receiving+postcopy'),
  ['receiving+postcopy+state', 'iteration-end', { ...STATES['receiving+postcopy+state'], iteration: 3 }],
  ['receiving+postcopy+state', 'device-state', STATES['receiving+postcopy+state']],
  ['receiving+postcopy+state', 'missing-pages', { ...STATES['receiving+postcopy+state'], missingAnnounced: true }],
  // A hybrid may still end by stop-and-copy.
  ['receiving+postcopy+state', 'switchover/stop-and-copy', { kind: 'switching', mode: 'hybrid', order: ORDER_STOP }],
  ...NEVER_RESUMED('receiving+postcopy+state'),
  ['receiving+postcopy+missing', 'iteration-end', { ...STATES['receiving+postcopy+missing'], iteration: 3 }],
  ['receiving+postcopy+missing', 'device-state', { ...STATES['receiving+postcopy+missing'], hasState: true }],
  ['receiving+postcopy+missing', 'missing-pages', STATES['receiving+postcopy+missing']],
  ...NEVER_RESUMED('receiving+postcopy+missing'),
  ['receiving+postcopy+state+missing', 'iteration-end', { ...STATES['receiving+postcopy+state+missing'], iteration: 3 }],
  ['receiving+postcopy+state+missing', 'device-state', STATES['receiving+postcopy+state+missing']],
  ['receiving+postcopy+state+missing', 'missing-pages', STATES['receiving+postcopy+state+missing']],
  ['receiving+postcopy+state+missing', 'switchover/stop-and-copy', { kind: 'switching', mode: 'hybrid', order: ORDER_STOP }],
  ['receiving+postcopy+state+missing', 'switchover/postcopy', { kind: 'postcopy-switching', mode: 'hybrid', order: ORDER_POSTCOPY, allPresent: false }],
  ...NEVER_RESUMED('receiving+postcopy+state+missing'),
  // stop-and-copy switchover.
  ['switching', 'resume-started', { kind: 'resuming', mode: 'live' }],
  // SWITCHOVER arrived but the guest never started: decline (answer NOT_RESUMED) while lingering.
  ...FAILURE_ROWS('switching', { kind: 'declining', mode: 'live', error: CLOSED }, { kind: 'declining', mode: 'live', error: FAILED }),
  ['resuming', 'resumed', { kind: 'running', mode: 'live' }],
  ['resuming', 'resume-failed', { kind: 'declining', mode: 'live', error: RESUME_FAILED }],
  // The target's resume was called: only its outcome decides.
  ...FAILURE_ROWS('resuming', STATES.resuming, STATES.resuming),
  ['running', 'complete', { kind: 'completed', mode: 'live', confirmed: true }],
  // The guest already runs here: losing the source now leaves it running, awaiting the source's query.
  ...FAILURE_ROWS('running', STATES['awaiting-confirmation'], STATES['awaiting-confirmation']),
  ['awaiting-confirmation', 'complete', { kind: 'completed', mode: 'live', confirmed: true }],
  ['awaiting-confirmation', 'linger-ended', { kind: 'completed', mode: 'live', confirmed: false }],
  ...FAILURE_ROWS('awaiting-confirmation', STATES['awaiting-confirmation'], STATES['awaiting-confirmation']),
  ['declining', 'query-answered', { kind: 'failed', error: FAILED }],
  ['declining', 'linger-ended', { kind: 'failed', error: FAILED }],
  ...FAILURE_ROWS('declining', STATES.declining, STATES.declining),
  // post-copy switchover.
  ['postcopy-switching', 'all-present', STATES['postcopy-switching+all-present']],
  ['postcopy-switching', 'resumed', { kind: 'postcopy-running', mode: 'hybrid' }],
  ...NEVER_RESUMED('postcopy-switching'),
  ['postcopy-switching+all-present', 'all-present', STATES['postcopy-switching+all-present']],
  // Nothing was missing: the guest starts with every page here, so there is nothing to run for.
  ['postcopy-switching+all-present', 'resumed', { kind: 'postcopy-confirming', mode: 'hybrid' }],
  ...NEVER_RESUMED('postcopy-switching+all-present'),
  ['postcopy-running', 'all-present', { kind: 'postcopy-confirming', mode: 'hybrid' }],
  // Pages split across hosts: keep everything, and wait for the source to recover post-copy.
  ...FAILURE_ROWS('postcopy-running', { kind: 'postcopy-recovering', mode: 'hybrid', error: CLOSED }, { kind: 'postcopy-recovering', mode: 'hybrid', error: FAILED }),
  ['postcopy-recovering', 'recovered', { kind: 'postcopy-running', mode: 'hybrid' }],
  // The window closed: paused for good, with the error that lost the link.
  ['postcopy-recovering', 'recover-ended', { kind: 'postcopy-paused', error: CLOSED }],
  // A recovery attempt's trouble is not the session's.
  ...FAILURE_ROWS('postcopy-recovering', STATES['postcopy-recovering'], STATES['postcopy-recovering']),
  ['postcopy-confirming', 'complete', { kind: 'completed', mode: 'hybrid', confirmed: true }],
  // Every page is here: losing the source leaves the guest running, unconfirmed.
  ...FAILURE_ROWS('postcopy-confirming', { kind: 'completed', mode: 'hybrid', confirmed: false }, { kind: 'completed', mode: 'hybrid', confirmed: false }),
];

// A link failure with recovery on: a pass being received waits for the source to reconnect; in every
// other state it is the failure it always was.
const receivingNames = (Object.keys(STATES) as StateName[]).filter((n) => n.startsWith('receiving'));
const VALID: [StateName, EventName, DestState][] = [
  ...BASE_VALID,
  ...BASE_VALID.filter(([n, e]) => (e === 'closed' || e === 'error') && !n.startsWith('receiving')).map(([n, e, next]): [StateName, EventName, DestState] => [n, `${e}/link` as EventName, next]),
  ...receivingNames.flatMap((n): [StateName, EventName, DestState][] => [
    [n, 'closed/link', { kind: 'reconnecting', resume: STATES[n] as Extract<DestState, { kind: 'receiving' }>, error: CLOSED }],
    [n, 'error/link', { kind: 'reconnecting', resume: STATES[n] as Extract<DestState, { kind: 'receiving' }>, error: FAILED }],
  ]),
  // The same pass goes on over the new link; a window that closes fails the session (never resumed).
  ['reconnecting', 'recovered', { ...STATES.reconnecting.resume, afterRecovery: true }],
  ['reconnecting', 'recover-ended', { kind: 'failed', error: CLOSED }],
  ['reconnecting', 'closed', STATES.reconnecting],
  ['reconnecting', 'error', STATES.reconnecting],
  ['reconnecting', 'closed/link', STATES.reconnecting],
  ['reconnecting', 'error/link', STATES.reconnecting],
];

// Valid pairs whose guard rejects them; tested with their own messages below.
const GUARDED = new Set<string>([
  'receiving|missing-pages', 'receiving+state|missing-pages',
  'receiving|switchover/stop-and-copy', 'receiving|switchover/postcopy',
  'receiving+postcopy|switchover/stop-and-copy', 'receiving+postcopy|switchover/postcopy',
  'receiving+postcopy+missing|switchover/stop-and-copy', 'receiving+postcopy+missing|switchover/postcopy',
  'receiving+state|switchover/postcopy',
  'receiving+postcopy+state|switchover/postcopy',
]);

const label = (s: unknown): string =>
  JSON.stringify(s, (_k, v: unknown) => (v instanceof Error ? `<${(v as MemshiftError).code}>` : typeof v === 'bigint' ? `${v}n` : v));

/** Freezes a state and everything it owns (but not the errors it carries), so a mutating step throws. */
function deepFreeze<T>(x: T): T {
  if (typeof x === 'object' && x !== null && !(x instanceof Error) && !Object.isFrozen(x)) {
    for (const v of Object.values(x)) deepFreeze(v);
    Object.freeze(x);
  }
  return x;
}
for (const s of Object.values(STATES)) deepFreeze(s);

for (const [from, ev, next] of VALID) {
  test(`${from} + ${ev} → ${label(next)}`, () => {
    const state: DestState = STATES[from];
    const event: DestEvent = EVENTS[ev](state);
    const before = label(state);
    const got = stepDest(state, event);
    assert.equal(got, next);
    assert.is(label(state), before, 'step must not modify the state it was given');
    if ('error' in next) assert.ok('error' in got && got.error === next.error, 'the error is carried by identity');
    if ('order' in next) assert.ok('order' in got && got.order === next.order, 'the SWITCHOVER order is carried by identity');
  });
}

test('every other (state, event) pair throws MS_ERR_UNEXPECTED_MESSAGE naming the event and the state', () => {
  const valid = new Set(VALID.map(([s, e]) => `${s}|${e}`));
  let invalid = 0;
  for (const [name, state] of Object.entries(STATES) as [StateName, DestState][]) {
    for (const [evName, make] of Object.entries(EVENTS) as [EventName, (s: DestState) => DestEvent][]) {
      const key = `${name}|${evName}`;
      if (valid.has(key) || GUARDED.has(key)) continue;
      invalid++;
      const event = make(state);
      const err = expectCode(() => stepDest(state, event), UNEXPECTED, key) as MemshiftError;
      assert.ok(err.message.includes(event.type), `${key}: message ${JSON.stringify(err.message)} does not name event ${event.type}`);
      assert.ok(err.message.includes(state.kind), `${key}: message ${JSON.stringify(err.message)} does not name state ${state.kind}`);
      assert.is(err.details.phase, state.kind, key);
    }
  }
  // 22 states × 21 event variants, minus the 75 + 24 + 12 + 6 valid rows and the 10 guarded pairs.
  assert.is(VALID.length, 117);
  assert.is(invalid, 22 * 21 - 117 - 10);
});

test('the valid table has no duplicate (state, event) pair and no pair that is also guarded', () => {
  const keys = VALID.map(([s, e]) => `${s}|${e}`);
  assert.is(new Set(keys).size, keys.length);
  for (const key of GUARDED) assert.not.ok(keys.includes(key), `${key} is both valid and guarded`);
});

test('hello accepts every migration mode and waits in setup with that mode', () => {
  for (const mode of MIGRATION_MODES) {
    assert.equal(stepDest({ kind: 'awaiting-hello' }, { type: 'hello', mode }), { kind: 'setup', mode });
  }
});

test('setup accepts nothing but ready and failures: no frame of the migration may arrive before HELLO_ACK', () => {
  const accepted = (Object.entries(EVENTS) as [EventName, (s: DestState) => DestEvent][])
    .filter(([, make]) => { try { stepDest(STATES.setup, make(STATES.setup)); return true; } catch { return false; } })
    .map(([name]) => name);
  assert.equal(accepted, ['ready', 'ready+postcopy', 'closed', 'error', 'closed/link', 'error/link']);
});

// ---- ITERATION_END must count 1, 2, 3 … -----------------------------------------------------------

test('iteration-end accepts 1, 2, 3 … in order from ready', () => {
  let s = stepDest(stepDest({ kind: 'awaiting-hello' }, { type: 'hello', mode: 'live' }), { type: 'ready', postcopy: false });
  for (let i = 1; i <= 5; i++) s = stepDest(s, { type: 'iteration-end', iteration: i });
  assert.equal(s, { kind: 'receiving', mode: 'live', iteration: 5, hasState: false, postcopy: false, missingAnnounced: false });
});

for (const [name, at, sent] of [
  ['the first iteration-end must be 1, not 0', 0, 0],
  ['the first iteration-end must be 1, not 2', 0, 2],
  ['a gap (5 after 3) throws', 3, 5],
  ['a repeat (3 after 3) throws', 3, 3],
  ['going back (2 after 3) throws', 3, 2],
] as const) {
  test(`iteration-end: ${name}`, () => {
    const state: DestState = { ...receiving('live', { hasState: true }), iteration: at };
    const err = expectCode(() => stepDest(state, { type: 'iteration-end', iteration: sent }), UNEXPECTED) as MemshiftError;
    assert.ok(err.message.includes(`iteration ${sent}`) && err.message.includes(`iteration ${at}`), err.message);
    assert.is(err.details.phase, 'receiving');
  });
}

test('after a recovery the last iteration-end may come again (its send failed at the source, which resumed that pass); once, then 1, 2, 3 … again', () => {
  const recovered: DestState = { ...receiving('live', { hasState: false }), iteration: 3, afterRecovery: true };
  const s = stepDest(recovered, { type: 'iteration-end', iteration: 3 });
  assert.equal(s, { ...receiving('live', { hasState: false }), iteration: 3 });
  expectCode(() => stepDest(s, { type: 'iteration-end', iteration: 3 }), UNEXPECTED);
  assert.is((stepDest(s, { type: 'iteration-end', iteration: 4 }) as Extract<DestState, { kind: 'receiving' }>).iteration, 4);
  expectCode(() => stepDest(recovered, { type: 'iteration-end', iteration: 2 }), UNEXPECTED);
});

// ---- receiving: the guards ------------------------------------------------------------------------

for (const name of ['receiving', 'receiving+state'] as const) {
  test(`missing-pages without post-copy negotiated throws, naming MISSING_PAGES (${name})`, () => {
    const err = expectCode(() => stepDest(STATES[name], { type: 'missing-pages' }), UNEXPECTED) as MemshiftError;
    assert.ok(err.message.includes('MISSING_PAGES outside a post-copy'), err.message);
    assert.is(err.details.phase, 'receiving');
  });
}

for (const name of ['receiving', 'receiving+postcopy', 'receiving+postcopy+missing'] as const) {
  for (const ev of ['switchover/stop-and-copy', 'switchover/postcopy'] as const) {
    test(`${ev} before device-state throws, naming DEVICE_STATE (${name})`, () => {
      const state = STATES[name];
      const err = expectCode(() => stepDest(state, EVENTS[ev]()), UNEXPECTED) as MemshiftError;
      assert.ok(err.message.includes('SWITCHOVER arrived before DEVICE_STATE'), err.message);
      assert.is(err.details.phase, 'receiving');
    });
  }
}

test('a post-copy switchover without post-copy negotiated throws, even with device state and no MISSING_PAGES expected', () => {
  const err = expectCode(() => stepDest(STATES['receiving+state'], EVENTS['switchover/postcopy']()), UNEXPECTED) as MemshiftError;
  assert.ok(err.message.includes('without a negotiated post-copy'), err.message);
  assert.is(err.details.phase, 'receiving');
});

test('a post-copy switchover before MISSING_PAGES throws, even with device state and post-copy negotiated', () => {
  const err = expectCode(() => stepDest(STATES['receiving+postcopy+state'], EVENTS['switchover/postcopy']()), UNEXPECTED) as MemshiftError;
  assert.ok(err.message.includes('before MISSING_PAGES'), err.message);
  assert.is(err.details.phase, 'receiving');
});

test('the three switchover guards are told apart by their messages', () => {
  const messages = (['receiving+postcopy', 'receiving+state', 'receiving+postcopy+state'] as const).map((name) => {
    try { stepDest(STATES[name], EVENTS['switchover/postcopy']()); } catch (err) { return (err as Error).message; }
    return 'did not throw';
  });
  assert.is(new Set(messages).size, 3, JSON.stringify(messages));
});

test('the switchover order is carried by identity into switching and postcopy-switching', () => {
  const stop = stepDest(STATES['receiving+state'], { type: 'switchover', postcopy: false, order: ORDER_STOP });
  const post = stepDest(STATES['receiving+postcopy+state+missing'], { type: 'switchover', postcopy: true, order: ORDER_POSTCOPY });
  assert.ok(stop.kind === 'switching' && stop.order === ORDER_STOP, label(stop));
  assert.ok(post.kind === 'postcopy-switching' && post.order === ORDER_POSTCOPY, label(post));
});

// ---- post-copy ---------------------------------------------------------------------------------

test('complete while postcopy-running is rejected: pages are still missing', () => {
  const err = expectCode(() => stepDest(STATES['postcopy-running'], { type: 'complete' }), UNEXPECTED) as MemshiftError;
  assert.ok(err.message.includes('complete') && err.message.includes('postcopy-running'), err.message);
});

test('complete before resumed is rejected in postcopy-switching, with or without every page present', () => {
  for (const name of ['postcopy-switching', 'postcopy-switching+all-present'] as const) {
    expectCode(() => stepDest(STATES[name], { type: 'complete' }), UNEXPECTED, name);
  }
});

test('a failure in postcopy-switching leaves the guest unstarted: failed, carrying the error by identity', () => {
  for (const name of ['postcopy-switching', 'postcopy-switching+all-present'] as const) {
    const got = stepDest(STATES[name], { type: 'closed', error: CLOSED });
    assert.ok(got.kind === 'failed' && got.error === CLOSED, `${name}: ${label(got)}`);
  }
});

test('closed during post-copy → postcopy-recovering, then (window closed) postcopy-paused, carrying the error by identity', () => {
  const got = stepDest(STATES['postcopy-running'], { type: 'closed', error: CLOSED });
  assert.ok(got.kind === 'postcopy-recovering' && got.error === CLOSED, label(got));
  const end = stepDest(got, { type: 'recover-ended' });
  assert.ok(end.kind === 'postcopy-paused' && end.error === CLOSED, label(end));
});

test('closed while switching → declining, carrying the error by identity (never resumed; it answers queries)', () => {
  const got = stepDest(STATES.switching, { type: 'closed', error: CLOSED });
  assert.ok(got.kind === 'declining' && got.error === CLOSED, label(got));
  const end = stepDest(got, { type: 'linger-ended' });
  assert.ok(end.kind === 'failed' && end.error === CLOSED, label(end));
});

// ---- lingering after a lost link (stop-and-copy) -----------------------------------------------------

test('lingers is true exactly for awaiting-confirmation and declining; post-copy states never linger', () => {
  assert.equal(kindsWhere(lingers), ['awaiting-confirmation', 'declining']);
});

test('a QUERY is answered RESUMED only where the guest runs here after a lost link, NOT_RESUMED only where it never will', () => {
  const answers = Object.fromEntries((Object.entries(STATES) as [StateName, DestState][]).map(([n, st]) => [n, queryAnswer(st)]).filter(([, a]) => a !== null));
  assert.equal(answers, { 'awaiting-confirmation': 'resumed', declining: 'not-resumed' });
});

test('a lost link while resuming is held: the resume decides (running, then awaiting-confirmation; or declining)', () => {
  const held = stepDest(STATES.resuming, { type: 'closed', error: CLOSED });
  assert.equal(held, STATES.resuming);
  const ran = stepDest(stepDest(held, { type: 'resumed' }), { type: 'error', error: CLOSED });
  assert.equal(ran, { kind: 'awaiting-confirmation', mode: 'live' });
  const failed = stepDest(held, { type: 'resume-failed', error: RESUME_FAILED });
  assert.ok(failed.kind === 'declining' && failed.error === RESUME_FAILED, label(failed));
});

test('awaiting-confirmation ends completed: confirmed by COMPLETE over a query, unconfirmed when the linger ends', () => {
  assert.equal(stepDest(STATES['awaiting-confirmation'], { type: 'complete' }), { kind: 'completed', mode: 'live', confirmed: true });
  assert.equal(stepDest(STATES['awaiting-confirmation'], { type: 'linger-ended' }), { kind: 'completed', mode: 'live', confirmed: false });
});

test('resumed is refused in switching: the guest starts only through resume-started (checks passed)', () => {
  expectCode(() => stepDest(STATES.switching, { type: 'resumed' }), UNEXPECTED);
});

test('final states reject every event, failures included', () => {
  for (const name of ['completed', 'failed', 'postcopy-paused'] as const) {
    for (const [ev, make] of Object.entries(EVENTS) as [EventName, (s: DestState) => DestEvent][]) {
      expectCode(() => stepDest(STATES[name], make(STATES[name])), UNEXPECTED, `${name} + ${ev}`);
    }
  }
});

// ---- the safety rule: where the guest starts ----------------------------------------------------------

test('only switching → resuming and postcopy-switching → postcopy-running/confirming start the guest, and only on resumed', () => {
  // States in which the guest runs here; a transition into one from outside it starts the guest.
  // (reconnecting is not among them: nothing runs here before SWITCHOVER.)
  const guestRuns = new Set<string>(['resuming', 'running', 'awaiting-confirmation', 'postcopy-running', 'postcopy-recovering', 'postcopy-confirming', 'completed']);
  const starts: string[] = [];
  for (const [name, state] of Object.entries(STATES) as [StateName, DestState][]) {
    for (const [ev, make] of Object.entries(EVENTS) as [EventName, (s: DestState) => DestEvent][]) {
      let next: DestState;
      try { next = stepDest(state, make(state)); } catch { continue; /* invalid pairs are covered above */ }
      if (!guestRuns.has(state.kind) && guestRuns.has(next.kind)) starts.push(`${name} + ${ev} → ${next.kind}`);
    }
  }
  assert.equal(starts, [
    'switching + resume-started → resuming',
    'postcopy-switching + resumed → postcopy-running',
    'postcopy-switching+all-present + resumed → postcopy-confirming',
  ]);
});

// ---- walk-throughs ------------------------------------------------------------------------------------

function walk(events: DestEvent[]): DestState[] {
  const trail: DestState[] = [];
  let s: DestState = { kind: 'awaiting-hello' };
  for (const e of events) trail.push((s = stepDest(s, e)));
  return trail;
}

test('hello, ready, two passes, device-state, switchover, resumed, complete: a confirmed live migration', () => {
  const trail = walk([
    { type: 'hello', mode: 'live' }, { type: 'ready', postcopy: false }, { type: 'iteration-end', iteration: 1 },
    { type: 'iteration-end', iteration: 2 }, { type: 'device-state' }, { type: 'switchover', postcopy: false, order: ORDER_STOP },
    { type: 'resume-started' }, { type: 'resumed' }, { type: 'complete' },
  ]);
  assert.equal(trail.map((s) => s.kind), ['setup', 'receiving', 'receiving', 'receiving', 'receiving', 'switching', 'resuming', 'running', 'completed']);
  assert.equal(trail.map(acceptsPages), [false, true, true, true, true, false, false, false, false]);
  assert.equal(trail[8], { kind: 'completed', mode: 'live', confirmed: true });
});

test('a hybrid migration: pre-copy passes, then MISSING_PAGES, post-copy SWITCHOVER, running on faults, all present, complete', () => {
  const trail = walk([
    { type: 'hello', mode: 'hybrid' }, { type: 'ready', postcopy: true }, { type: 'iteration-end', iteration: 1 },
    { type: 'missing-pages' }, { type: 'device-state' }, { type: 'switchover', postcopy: true, order: ORDER_POSTCOPY },
    { type: 'resumed' }, { type: 'all-present' }, { type: 'complete' },
  ]);
  assert.equal(trail.map((s) => s.kind), [
    'setup', 'receiving', 'receiving', 'receiving', 'receiving', 'postcopy-switching', 'postcopy-running', 'postcopy-confirming', 'completed',
  ]);
  assert.equal(trail.map(claimsPages), [false, false, false, false, false, false, true, false, false]);
  assert.equal(trail[8], { kind: 'completed', mode: 'hybrid', confirmed: true });
});

test('post-copy with nothing missing: all-present before resumed goes straight to postcopy-confirming', () => {
  const trail = walk([
    { type: 'hello', mode: 'postcopy' }, { type: 'ready', postcopy: true }, { type: 'missing-pages' }, { type: 'device-state' },
    { type: 'switchover', postcopy: true, order: ORDER_POSTCOPY }, { type: 'all-present' }, { type: 'resumed' }, { type: 'complete' },
  ]);
  assert.equal(trail.slice(4), [
    { kind: 'postcopy-switching', mode: 'postcopy', order: ORDER_POSTCOPY, allPresent: false },
    { kind: 'postcopy-switching', mode: 'postcopy', order: ORDER_POSTCOPY, allPresent: true },
    { kind: 'postcopy-confirming', mode: 'postcopy' },
    { kind: 'completed', mode: 'postcopy', confirmed: true },
  ]);
});

test('after a recovery, the next ITERATION_END may skip the ones the lost link carried; once, and never backwards', () => {
  const resumed = stepDest(STATES.reconnecting, { type: 'recovered' });
  assert.equal(resumed, { ...STATES.reconnecting.resume, afterRecovery: true });
  const skipped = stepDest(resumed, { type: 'iteration-end', iteration: 5 });
  assert.equal(skipped, { ...STATES.reconnecting.resume, iteration: 5 });
  expectCode(() => stepDest(skipped, { type: 'iteration-end', iteration: 7 }), UNEXPECTED, 'a second gap');
  expectCode(() => stepDest(resumed, { type: 'iteration-end', iteration: 1 }), UNEXPECTED, 'backwards');
  expectCode(() => stepDest(STATES.reconnecting.resume, { type: 'iteration-end', iteration: 5 }), UNEXPECTED, 'a gap without a recovery');
});

// ---- predicates ---------------------------------------------------------------------------------------

const kindsWhere = (pred: (s: DestState) => boolean): string[] => [...new Set((Object.values(STATES) as DestState[]).filter(pred).map((s) => s.kind))].sort();

test('isFinalDest is true exactly for completed, failed and postcopy-paused', () => {
  assert.equal(kindsWhere(isFinalDest), ['completed', 'failed', 'postcopy-paused']);
});

test('acceptsPages is true exactly for receiving and postcopy-running', () => {
  assert.equal(kindsWhere(acceptsPages), ['postcopy-running', 'receiving']);
  // Every receiving variant, whatever its flags.
  const receivingNames = (Object.keys(STATES) as StateName[]).filter((n) => n.startsWith('receiving'));
  assert.is(receivingNames.length, 6);
  for (const n of receivingNames) assert.ok(acceptsPages(STATES[n]), n);
});

test('claimsPages is true exactly for postcopy-running (the resumed guest may have written a page since)', () => {
  assert.equal(kindsWhere(claimsPages), ['postcopy-running']);
});

test.run();
