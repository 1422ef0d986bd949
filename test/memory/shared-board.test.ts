// The board helper: waiting wakes on another thread's store, and gives up at its timeout.

import { Worker } from 'node:worker_threads';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createBoard, waitForChange, waitUntil } from '../../src/memory/shared-board.js';

test('waitUntil wakes when another thread stores and notifies the slot', async () => {
  const board = createBoard(2);
  const worker = new Worker(
    `const { workerData } = require('node:worker_threads'); const b = new Int32Array(workerData);
     Atomics.store(b, 1, 7); Atomics.notify(b, 1);`,
    { eval: true, workerData: board.buffer },
  );
  // Listen before waiting: the worker may exit while we wait, and a missed 'exit' would hang the test.
  const exited = new Promise((r) => worker.once('exit', r));
  const seen = await waitUntil(board, 1, () => Atomics.load(board, 1) === 7, 10_000);
  await exited;
  assert.is(seen, true);
  assert.is(Atomics.load(board, 1), 7);
});

test('waitUntil gives up at its timeout with the last check', async () => {
  const board = createBoard(1);
  const seen = await waitUntil(board, 0, () => Atomics.load(board, 0) === 1, 20, 5);
  assert.is(seen, false);
});

test('waitForChange returns at once when the slot already differs: before the next turn of the event loop', async () => {
  const board = createBoard(1);
  Atomics.store(board, 0, 3);
  let nextTurn = false;
  setImmediate(() => { nextTurn = true; });
  await waitForChange(board, 0, 0, 60_000);
  assert.is(nextTurn, false, 'it waited');
  assert.is(Atomics.load(board, 0), 3);
});

test('waitForChange keeps its thread alive to its timeout, a fraction of a millisecond included', async () => {
  // Nothing else holds this worker's event loop open: were a wait's timeout to land after the loop
  // drained, the worker would end without reaching its message.
  const url = new URL('../../src/memory/shared-board.js', import.meta.url).href;
  const worker = new Worker(
    `const { parentPort } = require('node:worker_threads');
     import(${JSON.stringify(url)}).then(async ({ createBoard, waitForChange }) => {
       const board = createBoard(1);
       for (let i = 0; i < 400; i++) await waitForChange(board, 0, 0, [0.7, 1.3, 0.2, 2][i % 4]);
       parentPort.postMessage('waited');
     });`,
    { eval: true },
  );
  const said: unknown[] = [];
  worker.on('message', (m) => said.push(m));
  await new Promise((r) => worker.once('exit', r));
  assert.equal(said, ['waited']);
});

test.run();
