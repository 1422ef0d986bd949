// The inbox (migration/inbox.ts): answers reach their waiter, one that arrives early waits in the
// queue, and a peer that floods frames nobody asked for fails the channel at MAX_QUEUED_FRAMES instead
// of growing this process's memory; the peer hears why.

import { getEventListeners } from 'node:events';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode, type MemshiftError } from '../../src/errors.js';
import { Inbox, MAX_QUEUED_FRAMES } from '../../src/migration/inbox.js';
import { FrameType } from '../../src/protocol/constants.js';
import { decodeError, encodeIterationEnd } from '../../src/protocol/control.js';
import { linkPair } from '../_support/link-pair.js';

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

test('an answer sent before anyone waits is queued and handed to the next expect', async () => {
  const { a, b } = linkPair();
  const inbox = new Inbox(a);
  b.setHandlers({ onFrame: () => undefined, onClosed: () => undefined });
  await b.send(encodeIterationEnd({ iteration: 1, pages: 2, bytes: 3 }));
  await settle();
  const f = await inbox.expect([FrameType.ITERATION_END], 1000);
  assert.is(f.type, FrameType.ITERATION_END);
  assert.is(inbox.error, null);
});

test(`a flood of frames nobody asked for fails the channel at ${MAX_QUEUED_FRAMES + 1}, naming it, and the peer hears why`, async () => {
  const { a, b } = linkPair();
  const inbox = new Inbox(a);
  let failure: MemshiftError | null = null;
  inbox.onFailure = (e) => { failure = e; };
  const heard: string[] = [];
  b.setHandlers({
    onFrame: (f) => { if (f.type === FrameType.ERROR) heard.push(decodeError(f.buf, f.bodyOffset, f.bodyLength).code); },
    onClosed: () => undefined,
  });
  for (let i = 0; i < MAX_QUEUED_FRAMES; i++) await b.send(encodeIterationEnd({ iteration: i + 1, pages: 0, bytes: 0 }));
  await settle();
  assert.is(inbox.error, null, `${MAX_QUEUED_FRAMES} queued frames are still within bounds`);
  await b.send(encodeIterationEnd({ iteration: 99, pages: 0, bytes: 0 })).catch(() => undefined);
  await settle();
  await settle();
  assert.ok(failure !== null, 'the inbox failed');
  const err = failure as unknown as MemshiftError;
  assert.is(err.code, ErrorCode.UNEXPECTED_MESSAGE);
  assert.match(err.message, new RegExp(`sent ${MAX_QUEUED_FRAMES + 1} control frames nobody asked for \\(the last ITERATION_END\\)`));
  assert.equal(heard, [ErrorCode.UNEXPECTED_MESSAGE], 'the flooding peer got an ERROR frame');
  assert.is(a.isClosed, true);
});

test('an inbox whose channel closed lets go of the abort signal (a recovery opens one per attempt on the same signal)', async () => {
  const cancel = new AbortController();
  // One attempt after another, as a recovery makes them: without letting go, the 11th would trip
  // Node's MaxListenersExceededWarning on the operator's terminal.
  for (let attempt = 0; attempt < 20; attempt++) {
    const { a, b } = linkPair();
    b.setHandlers({ onFrame: () => undefined, onClosed: () => undefined });
    const inbox = new Inbox(a, cancel.signal);
    assert.is(getEventListeners(cancel.signal, 'abort').length, 1);
    a.destroy();
    await settle();
    assert.is(inbox.error?.code, ErrorCode.CONNECTION_CLOSED);
    assert.is(getEventListeners(cancel.signal, 'abort').length, 0, `attempt ${attempt}: no listener left behind`);
  }
});

test.run();
