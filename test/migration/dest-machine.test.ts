// destination machine: stepDest as a table, like the source's. Valid pairs list the state they lead
// to (by `kind` and fields); every other pair of the product throws MS_ERR_UNEXPECTED_MESSAGE naming
// both. Guards inside valid pairs (consecutive ITERATION_END, DEVICE_STATE before SWITCHOVER,
// post-copy needing both COMPLETE and all pages present) get their own tests.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode, MemshiftError } from '../../src/errors.js';
import { MIGRATION_MODES } from '../../src/protocol/constants.js';
import { isFinalDest, stepDest, type DestEvent, type DestState } from '../../src/migration/destination/machine.js';
import { expectCode } from '../_support/guest-helpers.js';

const UNEXPECTED = 'MS_ERR_UNEXPECTED_MESSAGE';
const CLOSED = new MemshiftError(ErrorCode.CONNECTION_CLOSED, 'source closed');
const FAILED = new MemshiftError(ErrorCode.DIGEST_MISMATCH, 'digest differs');

// One instance of every state (and of each flag combination that changes what is valid).
const STATES = {
  'awaiting-hello': { kind: 'awaiting-hello' },
  receiving: { kind: 'receiving', mode: 'live', iteration: 2, hasState: false },
  'receiving+state': { kind: 'receiving', mode: 'warm', iteration: 2, hasState: true },
  switching: { kind: 'switching', mode: 'live' },
  running: { kind: 'running', mode: 'live' },
  postcopy: { kind: 'postcopy', mode: 'hybrid', complete: false, allPresent: false },
  'postcopy+complete': { kind: 'postcopy', mode: 'hybrid', complete: true, allPresent: false },
  'postcopy+all-present': { kind: 'postcopy', mode: 'hybrid', complete: false, allPresent: true },
  completed: { kind: 'completed', mode: 'live', confirmed: true },
  failed: { kind: 'failed', error: FAILED },
  'postcopy-paused': { kind: 'postcopy-paused', error: CLOSED },
} satisfies Record<string, DestState>;
type StateName = keyof typeof STATES;

// Event variants. iteration-end is "the next one" for the state it is sent to (1 when there is none).
const EVENTS = {
  hello: () => ({ type: 'hello', mode: 'postcopy' }),
  batch: () => ({ type: 'batch' }),
  'iteration-end': (s: DestState) => ({ type: 'iteration-end', iteration: s.kind === 'receiving' ? s.iteration + 1 : 1 }),
  'device-state': () => ({ type: 'device-state' }),
  'switchover/stop-and-copy': () => ({ type: 'switchover', postcopy: false }),
  'switchover/postcopy': () => ({ type: 'switchover', postcopy: true }),
  resumed: () => ({ type: 'resumed' }),
  'all-present': () => ({ type: 'all-present' }),
  complete: () => ({ type: 'complete' }),
  closed: () => ({ type: 'closed', error: CLOSED }),
  error: () => ({ type: 'error', error: FAILED }),
} satisfies Record<string, (s: DestState) => DestEvent>;
type EventName = keyof typeof EVENTS;

const VALID: [StateName, EventName, DestState][] = [
  ['awaiting-hello', 'hello', { kind: 'receiving', mode: 'postcopy', iteration: 0, hasState: false }],
  ['awaiting-hello', 'closed', { kind: 'failed', error: CLOSED }],
  ['awaiting-hello', 'error', { kind: 'failed', error: FAILED }],
  ['receiving', 'batch', STATES.receiving],
  ['receiving', 'iteration-end', { ...STATES.receiving, iteration: 3 }],
  ['receiving', 'device-state', { ...STATES.receiving, hasState: true }],
  ['receiving', 'closed', { kind: 'failed', error: CLOSED }],
  ['receiving', 'error', { kind: 'failed', error: FAILED }],
  ['receiving+state', 'batch', STATES['receiving+state']],
  ['receiving+state', 'iteration-end', { ...STATES['receiving+state'], iteration: 3 }],
  ['receiving+state', 'device-state', STATES['receiving+state']],
  ['receiving+state', 'switchover/stop-and-copy', { kind: 'switching', mode: 'warm' }],
  ['receiving+state', 'switchover/postcopy', { kind: 'postcopy', mode: 'warm', complete: false, allPresent: false }],
  ['receiving+state', 'closed', { kind: 'failed', error: CLOSED }],
  ['receiving+state', 'error', { kind: 'failed', error: FAILED }],
  ['switching', 'resumed', { kind: 'running', mode: 'live' }],
  ['switching', 'closed', { kind: 'failed', error: CLOSED }],
  ['switching', 'error', { kind: 'failed', error: FAILED }],
  ['running', 'complete', { kind: 'completed', mode: 'live', confirmed: true }],
  // The guest already runs here: losing the source now leaves it running, unconfirmed.
  ['running', 'closed', { kind: 'completed', mode: 'live', confirmed: false }],
  ['running', 'error', { kind: 'completed', mode: 'live', confirmed: false }],
  ['postcopy', 'batch', STATES.postcopy],
  ['postcopy', 'all-present', { ...STATES.postcopy, allPresent: true }],
  ['postcopy', 'complete', { ...STATES.postcopy, complete: true }],
  ['postcopy', 'closed', { kind: 'postcopy-paused', error: CLOSED }],
  ['postcopy', 'error', { kind: 'postcopy-paused', error: FAILED }],
  ['postcopy+complete', 'batch', STATES['postcopy+complete']],
  ['postcopy+complete', 'complete', STATES['postcopy+complete']],
  ['postcopy+complete', 'all-present', { kind: 'completed', mode: 'hybrid', confirmed: true }],
  ['postcopy+complete', 'closed', { kind: 'postcopy-paused', error: CLOSED }],
  ['postcopy+complete', 'error', { kind: 'postcopy-paused', error: FAILED }],
  ['postcopy+all-present', 'batch', STATES['postcopy+all-present']],
  ['postcopy+all-present', 'complete', { kind: 'completed', mode: 'hybrid', confirmed: true }],
  ['postcopy+all-present', 'all-present', STATES['postcopy+all-present']],
  ['postcopy+all-present', 'closed', { kind: 'postcopy-paused', error: CLOSED }],
  ['postcopy+all-present', 'error', { kind: 'postcopy-paused', error: FAILED }],
];

// Valid pairs whose guard rejects them; tested with their own messages below.
const GUARDED = new Set(['receiving|switchover/stop-and-copy', 'receiving|switchover/postcopy']);

const label = (s: DestState): string => JSON.stringify(s, (k, v) => (v instanceof Error ? `<${(v as MemshiftError).code}>` : v));

for (const [from, ev, next] of VALID) {
  test(`${from} + ${ev} → ${label(next)}`, () => {
    const state: DestState = STATES[from];
    const before = label(state);
    assert.equal(stepDest(state, EVENTS[ev](state)), next);
    assert.is(label(state), before, 'step must not modify the state it was given');
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
      assert.ok(err.message.includes(event.type), `message ${JSON.stringify(err.message)} does not name event ${event.type}`);
      assert.ok(err.message.includes(state.kind), `message ${JSON.stringify(err.message)} does not name state ${state.kind}`);
      assert.is(err.details.phase, state.kind);
    }
  }
  assert.is(invalid, 11 * 11 - VALID.length - GUARDED.size);
});

test('hello accepts every migration mode and starts at iteration 0 without device state', () => {
  for (const mode of MIGRATION_MODES) {
    assert.equal(stepDest({ kind: 'awaiting-hello' }, { type: 'hello', mode }), { kind: 'receiving', mode, iteration: 0, hasState: false });
  }
});

// ---- ITERATION_END must count 1, 2, 3 … -----------------------------------------------------------

test('iteration-end accepts 1, 2, 3 … in order from the hello', () => {
  let s = stepDest({ kind: 'awaiting-hello' }, { type: 'hello', mode: 'live' });
  for (let i = 1; i <= 5; i++) {
    s = stepDest(s, { type: 'iteration-end', iteration: i });
    s = stepDest(s, { type: 'batch' });
  }
  assert.equal(s, { kind: 'receiving', mode: 'live', iteration: 5, hasState: false });
});

for (const [name, at, sent] of [
  ['the first iteration-end must be 1, not 0', 0, 0],
  ['the first iteration-end must be 1, not 2', 0, 2],
  ['a gap (2 after 3 → 5) throws', 3, 5],
  ['a repeat (3 after 3) throws', 3, 3],
  ['going back (2 after 3) throws', 3, 2],
] as const) {
  test(`iteration-end: ${name}`, () => {
    const state: DestState = { kind: 'receiving', mode: 'live', iteration: at, hasState: true };
    const err = expectCode(() => stepDest(state, { type: 'iteration-end', iteration: sent }), UNEXPECTED) as MemshiftError;
    assert.ok(err.message.includes(String(sent)) && err.message.includes(String(at)), err.message);
    assert.is(err.details.phase, 'receiving');
  });
}

// ---- SWITCHOVER needs DEVICE_STATE first -----------------------------------------------------------

for (const postcopy of [false, true]) {
  test(`switchover (${postcopy ? 'post-copy' : 'stop-and-copy'}) before device-state throws`, () => {
    const err = expectCode(() => stepDest(STATES.receiving, { type: 'switchover', postcopy }), UNEXPECTED) as MemshiftError;
    assert.ok(err.message.includes('DEVICE_STATE'), err.message);
    assert.is(err.details.phase, 'receiving');
  });
}

test('device-state, then switchover, then resumed, then complete: a confirmed live migration', () => {
  const events: DestEvent[] = [
    { type: 'hello', mode: 'live' }, { type: 'batch' }, { type: 'iteration-end', iteration: 1 }, { type: 'batch' },
    { type: 'iteration-end', iteration: 2 }, { type: 'device-state' }, { type: 'switchover', postcopy: false },
    { type: 'resumed' }, { type: 'complete' },
  ];
  const kinds: string[] = [];
  let s: DestState = { kind: 'awaiting-hello' };
  for (const e of events) kinds.push((s = stepDest(s, e)).kind);
  assert.equal(kinds, ['receiving', 'receiving', 'receiving', 'receiving', 'receiving', 'receiving', 'switching', 'running', 'completed']);
  assert.equal(s, { kind: 'completed', mode: 'live', confirmed: true });
});

// ---- failures: where they happen decides what remains ---------------------------------------------

test('closed while running → completed with confirmed false (the guest runs here)', () => {
  assert.equal(stepDest(STATES.running, { type: 'closed', error: CLOSED }), { kind: 'completed', mode: 'live', confirmed: false });
});

test('closed while switching → failed, carrying the error by identity (never resumed)', () => {
  const got = stepDest(STATES.switching, { type: 'closed', error: CLOSED });
  assert.ok(got.kind === 'failed' && got.error === CLOSED, label(got));
});

test('closed during post-copy → postcopy-paused, carrying the error by identity', () => {
  const got = stepDest(STATES['postcopy+complete'], { type: 'closed', error: CLOSED });
  assert.ok(got.kind === 'postcopy-paused' && got.error === CLOSED, label(got));
});

test('only switching → running starts the guest: no other event sequence reaches running', () => {
  const reach = new Set<string>();
  for (const [name, state] of Object.entries(STATES) as [StateName, DestState][]) {
    for (const make of Object.values(EVENTS) as ((s: DestState) => DestEvent)[]) {
      try {
        if (stepDest(state, make(state)).kind === 'running') reach.add(name);
      } catch { /* invalid pairs are covered above */ }
    }
  }
  assert.equal([...reach], ['switching']);
});

// ---- post-copy: COMPLETE and all-pages-present, in either order -------------------------------------

test('post-copy: complete before all-present waits for all-present, then completes', () => {
  let s: DestState = stepDest(STATES['receiving+state'], { type: 'switchover', postcopy: true });
  s = stepDest(s, { type: 'complete' });
  assert.equal(s, { kind: 'postcopy', mode: 'warm', complete: true, allPresent: false });
  s = stepDest(s, { type: 'batch' });
  s = stepDest(s, { type: 'all-present' });
  assert.equal(s, { kind: 'completed', mode: 'warm', confirmed: true });
});

test('post-copy: all-present before complete waits for complete, then completes', () => {
  let s: DestState = stepDest(STATES['receiving+state'], { type: 'switchover', postcopy: true });
  s = stepDest(s, { type: 'all-present' });
  assert.equal(s, { kind: 'postcopy', mode: 'warm', complete: false, allPresent: true });
  s = stepDest(s, { type: 'complete' });
  assert.equal(s, { kind: 'completed', mode: 'warm', confirmed: true });
});

test('isFinalDest is true exactly for completed, failed and postcopy-paused', () => {
  const finals = (Object.entries(STATES) as [StateName, DestState][]).filter(([, s]) => isFinalDest(s)).map(([n]) => n).sort();
  assert.equal(finals, ['completed', 'failed', 'postcopy-paused']);
});

test.run();
