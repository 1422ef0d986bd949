import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { failureRecap } from '../_support/failure-recap.js';

// uvu's own output, colours stripped, as `npm test` sees it.
const passing = ['migration/metrics.test.js', '• • •   (3 / 3)', '', 'protocol/lz4.test.js', '• •   (2 / 2)', '', '  Total:     5', '  Passed:    5'].join('\n');

const failing = [
  'e2e/shaped-link.test.js',
  '• ✘   (1 / 2)',
  '',
  '   FAIL  "over a 100 Mbit/s veth: LZ4 switches on"',
  '    Expected value to be truthy  (ok)',
  '    at assert (file:///repo/node_modules/uvu/assert/index.mjs:33:8)',
  '    at Object.handler (file:///repo/dist/test/e2e/shaped-link.test.js:66:12)',
  '',
  'migration/metrics.test.js',
  '• • •   (3 / 3)',
  'sim/disk.test.js',
  '• •   (2 / 5)',
  '  Total:     10',
  '  Passed:    6',
].join('\n');

test('a suite that passed has nothing to recap', () => {
  assert.is(failureRecap(passing), '');
});

test('the recap names each file that fell short, its FAIL block without uvu frames, and nothing of the files that passed', () => {
  const recap = failureRecap(failing);
  assert.match(recap, /e2e\/shaped-link\.test\.js\n\s+ran 1 of 2\n\s+FAIL\s+"over a 100 Mbit\/s veth/);
  assert.match(recap, /Expected value to be truthy/);
  assert.match(recap, /shaped-link\.test\.js:66:12/);
  assert.not.match(recap, /node_modules/);
  assert.match(recap, /sim\/disk\.test\.js\n\s+ran 2 of 5/);
  assert.not.match(recap, /metrics/);
});

test('an early exit is recapped under the file that was running', () => {
  const recap = failureRecap(['memory/shared-board.test.js', '• •', 'Exiting early before testing is finished.'].join('\n'));
  assert.match(recap, /memory\/shared-board\.test\.js\n\s+Exiting early/);
});

test.run();
