// The progress line: each figure of a Progress event appears in it, and the ETA only once the source
// has one (from the end of pass 1), as seconds or ∞ when no estimate is finite.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatProgress } from '../../src/cli/progress.js';
import type { Progress } from '../../src/index.js';

const SOURCE: Progress = {
  role: 'source', phase: 'precopy', iteration: 2, remainingPages: 1234, dirtyPagesPerSec: 5000, bandwidthBytesPerSec: 1.5e9,
  expectedDowntimeMs: 12.34, bytesTransferred: 2.5e9, elapsedMs: 3456, throttlePercent: 0,
};

const etaPart = (p: Progress): string | undefined => formatProgress(p).split('  ').find((s) => s.startsWith('eta'));

test('the source line shows the ETA in seconds to 0.1 s once there is one', () => {
  assert.equal([etaPart({ ...SOURCE, etaMs: 2345 }), etaPart({ ...SOURCE, etaMs: 0 }), etaPart({ ...SOURCE, etaMs: 49 })], ['eta 2.3 s', 'eta 0.0 s', 'eta 0.0 s']);
});

test('no estimate yet (before pass 1 ended), no eta; no finite estimate, eta ∞', () => {
  assert.is(etaPart(SOURCE), undefined);
  assert.is(etaPart({ ...SOURCE, etaMs: null }), 'eta ∞');
});

test('the ETA sits after the expected downtime and before the bytes moved', () => {
  const line = formatProgress({ ...SOURCE, etaMs: 1500 });
  assert.ok(line.indexOf('exp. downtime 12.3 ms') < line.indexOf('eta 1.5 s'), line);
  assert.ok(line.indexOf('eta 1.5 s') < line.indexOf('2.50 GB'), line);
});

test('the destination line has no ETA, whatever the event carries', () => {
  assert.is(etaPart({ ...SOURCE, role: 'destination', etaMs: 1000 }), undefined);
});

test.run();
