// A prepared destination takes exactly the guest it was prepared for: every difference is named.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { preparedTarget, regionMismatch } from '../../src/migration/destination/prepared-target.js';
import type { Region } from '../../src/memory/types.js';
import { MirrorTarget } from '../_support/mirror-guest.js';
import { expectCode } from '../_support/guest-helpers.js';

const ram = (id: number, pageCount: number, pageSize = 4096): Region => ({ id, name: `ram${id}`, kind: 'ram', pageSize, pageCount });
const HERE = [ram(0, 256), ram(1, 128)];

for (const [what, announced, expected] of [
  ['the same regions', [ram(0, 256), ram(1, 128)], null],
  ['one region fewer', [ram(0, 256)], "the source's guest has 1 regions, this destination was prepared for 2"],
  ['a larger region', [ram(0, 256), ram(1, 129)], 'region 1 (ram1) has 129 pages at the source: larger than the pre-allocated guest (128)'],
  ['a smaller region', [ram(0, 255), ram(1, 128)], 'region 0 (ram0) has 255 pages at the source: smaller than the pre-allocated guest (256)'],
  ['another page size', [ram(0, 256, 8192), ram(1, 128)], 'region 0 (ram0) has 8192-byte pages at the source, 4096 here'],
  ['another id', [ram(0, 256), ram(2, 128)], 'region 1 is region 2 (ram2) at the source, region 1 (ram1) here'],
  ['another kind', [ram(0, 256), { ...ram(1, 128), kind: 'disk' }], 'region 1 (ram1) is disk at the source, ram here'],
] as [string, Region[], string | null][]) {
  test(`regionMismatch: ${what}`, () => {
    assert.is(regionMismatch(HERE, announced), expected);
  });
}

test('a prepared target is handed out once, for a matching guest only', () => {
  const target = new MirrorTarget(HERE);
  const take = preparedTarget(target);
  expectCode(() => take([ram(0, 512), ram(1, 128)]), 'MS_ERR_HANDSHAKE_REJECTED', 'larger');
  assert.is(take(HERE), target);
  const again = expectCode(() => take(HERE), 'MS_ERR_HANDSHAKE_REJECTED', 'second use');
  assert.match(again.message, /already received a migration/);
});

test.run();
