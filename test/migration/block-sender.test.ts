// The source's disk blocks on a link (migration/source/block-sender.ts): --max-bandwidth paces them as it
// paces pages (every byte sent was asked of the limiter first), and a pass that fails midway, or whose
// pages' half failed (stopped), leaves no block behind — after a recovery, every block taken and not
// landed is marked again, those the destination holds are not, and those never taken keep their marks.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BlockSender } from '../../src/migration/source/block-sender.js';
import { DiskDigest } from '../../src/migration/disk-digest.js';
import { heldBlockFrames } from '../../src/migration/block-recovery.js';
import type { BlockDevice } from '../../src/memory/types.js';
import { decodeBlocks } from '../../src/protocol/blocks.js';
import { decodePageHashes } from '../../src/protocol/control.js';
import { FRAME_HEADER_BYTES, readFrameHeader } from '../../src/protocol/frame.js';
import type { FrameLink } from '../../src/transport/channel.js';
import { ErrorCode, MemshiftError } from '../../src/errors.js';

const BLOCK = 4096;
const BLOCKS = 1000;

function disk(): BlockDevice {
  const dirty = new Int32Array(new SharedArrayBuffer(Math.ceil(BLOCKS / 32) * 4));
  for (let b = 0; b < BLOCKS; b++) dirty[b >>> 5] |= 1 << (b & 31);
  return {
    blockBytes: BLOCK, blocks: BLOCKS, dirty,
    read: (first: number, count: number, into: Uint8Array) => { for (let k = 0; k < count; k++) into.fill(((first + k) % 250) + 1, k * BLOCK, (k + 1) * BLOCK); },
    write: () => undefined,
    flush: () => Promise.resolve(),
  };
}

function marked(d: BlockDevice): number[] {
  const out: number[] = [];
  for (let b = 0; b < d.blocks; b++) if ((d.dirty[b >>> 5] >>> (b & 31)) & 1) out.push(b);
  return out;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

test('--max-bandwidth paces blocks: every frame\'s bytes are asked of the limiter before the frame goes', async () => {
  const events: string[] = [];
  let asked = 0;
  let sent = 0;
  const limiter = { take: (n: number) => { asked += n; events.push('take'); return null; } };
  const link = { send: (f: Uint8Array) => { sent += f.length; events.push('send'); assert.ok(asked >= sent, 'sent only what the limiter allowed'); return Promise.resolve(); } } as unknown as FrameLink;
  const result = await new BlockSender([disk()]).sendDirty(link, { limiter });
  assert.is(result.blocks, BLOCKS);
  assert.is(asked, sent);
  assert.is(asked, result.bytes);
  assert.is(events[0], 'take');
});

test('a pass that fails midway: after the recovery, blocks taken and not landed go again, landed ones do not, untaken ones keep their marks', async () => {
  const d = disk();
  const sender = new BlockSender([d]);
  const landed: Uint8Array[] = [];
  // The first frame lands; every later send fails (the link died), noticed when its slot comes round.
  const link = {
    send: (f: Uint8Array) => {
      if (landed.length === 0) {
        landed.push(f.slice());
        return Promise.resolve();
      }
      return Promise.reject(new MemshiftError(ErrorCode.CONNECTION_CLOSED, 'cut'));
    },
  } as unknown as FrameLink;
  const failed = await sender.sendDirty(link).then(() => null, (e: unknown) => e);
  assert.ok(failed instanceof MemshiftError, 'the pass failed with the link');
  const untaken = marked(d);
  assert.ok(untaken.length > 0 && untaken[0] > 64, 'the pass stopped before taking every mark');

  // The destination holds the first frame's blocks, as checked and recorded there.
  const dest = new DiskDigest([{ blockBytes: BLOCK, blocks: BLOCKS }]);
  const h = readFrameHeader(landed[0], 0, landed[0].length)!;
  const b = decodeBlocks(landed[0], FRAME_HEADER_BYTES, h.bodyLength, [{ blockBytes: BLOCK, blocks: BLOCKS }]);
  dest.record(0, b.firstBlock, b.count, landed[0], b.hashesOffset);

  const recovery = sender.recovery();
  for (const f of heldBlockFrames(dest, 1)) {
    const fh = readFrameHeader(f, 0, f.length)!;
    recovery.held(decodePageHashes(f, FRAME_HEADER_BYTES, fh.bodyLength));
  }
  const again = recovery.mark(false);
  assert.equal(marked(d), range(b.count, BLOCKS), 'everything but the landed frame is marked');
  assert.is(again, untaken[0] - b.count, 'counted: the blocks taken before the failure and not landed');
});

test('once stopped (the pages\' half failed), no further run goes; a recovery marks the run taken and not sent with those that went', async () => {
  const d = disk();
  const sender = new BlockSender([d]);
  let sends = 0;
  const link = { send: () => { sends++; return Promise.resolve(); } } as unknown as FrameLink;
  const result = await sender.sendDirty(link, { stopped: () => sends >= 1 });
  assert.is(sends, 1, 'one run went before the stop');
  assert.is(result.blocks, 64);
  const untaken = marked(d);
  assert.ok(untaken[0] >= 128, 'the next run was taken when the stop was seen');
  // The destination named nothing (it holds nothing): all that went, and the run taken, go again.
  assert.is(sender.recovery().mark(false), untaken[0]);
  assert.equal(marked(d), range(0, BLOCKS));
});

test.run();
