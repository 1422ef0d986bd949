// A guest with local disks migrates twice, A → B → C, in one process: the blocks B received (written
// by the engine, not by its vCPU, so marked by nothing that wrote them) must go on to C, so that C's
// disks equal the uninterrupted replay, as its RAM does. A received guest marks every block of its
// local disks dirty when its state loads (simulated-guest.ts), as its RAM sends every page; the holes
// among them are not sent again (a block never sent that reads as zero is left out: block-sender.ts).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listen, migrate, receive, formatAddress, type Region } from '../../src/index.js';
import { SimulatedGuest } from '../../src/sim/index.js';
import { guestConfig } from '../_support/guest-helpers.js';
import { diffDisksAgainstReplay, diffAgainstReplay, writtenBlocks } from '../_support/migration.js';
import { deadline } from '../_support/deadline.js';

const MiB = 1 << 20;

async function hop(source: SimulatedGuest, diskDir: string, mode: 'live' | 'postcopy' = 'live'): Promise<{ guest: SimulatedGuest; blockBytes: number; bytes: number }> {
  const { server, address } = await listen('127.0.0.1:0');
  try {
    const receiving = receive({
      listen: server, security: 'insecure',
      createTarget: (regions: readonly Region[]) => SimulatedGuest.receiving(regions, {}, { storage: { diskDir, shared: false } }),
    });
    const report = await migrate(source, formatAddress(address), { security: 'insecure', mode, downtimeLimitMs: 50 });
    assert.is(report.outcome, 'completed');
    const { report: r, target } = await receiving;
    assert.is(r.outcome, 'completed');
    return { guest: target as SimulatedGuest, blockBytes: report.iterations.reduce((n, i) => n + (i.blocks?.bytes ?? 0), 0), bytes: report.bytesTransferred };
  } finally {
    server.close();
  }
}

for (const second of ['live', 'postcopy'] as const) {
test(`A → B → C with two local disks, the second hop ${second}: C's RAM and disks equal the replay`, deadline(90_000, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-second-hop-'));
  const sub = (n: string): string => {
    const d = join(dir, n);
    mkdirSync(d);
    return d;
  };
  // 12 MiB of disks, of which a few hundred KiB are written: the rest are holes.
  const config = guestConfig({ memoryBytes: 8 * MiB, seed: 77, disks: [8 * MiB, 4 * MiB], diskFillBytes: 256 * 1024, stepsPerSecond: 200_000 });
  const a = SimulatedGuest.create(config, {}, { storage: { diskDir: sub('a'), shared: false } });
  let b: SimulatedGuest | null = null;
  let c: SimulatedGuest | null = null;
  try {
    await a.resume();
    await new Promise((r) => setTimeout(r, 300));
    const first = await hop(a, sub('b'));
    b = first.guest;
    await new Promise((r) => setTimeout(r, 300));
    const hop2 = await hop(b, sub('c'), second);
    c = hop2.guest;
    assert.ok(first.blockBytes > 0, 'the first hop carried blocks');
    if (second === 'live') {
      // The second hop carries the blocks written so far, not the 12 MiB of holes (its RAM bytes depend
      // on how many passes the dirtying takes, so only the blocks' bytes are compared).
      assert.ok(hop2.blockBytes < first.blockBytes + 4 * MiB, `second hop's blocks ${hop2.blockBytes} B, first's ${first.blockBytes} B`);
    } else {
      // Post-copy pushes every block still on B, holes too (C waits for each), but names the holes as
      // zero runs (ZERO_BLOCKS): the RAM (8 MiB, pushed once) and B's written blocks with their hashes,
      // not the rest of its 12 MiB of disks as well (2 MiB for frame heads, faults and duplicates).
      const written = writtenBlocks(join(dir, 'b', 'disk0.img')) + writtenBlocks(join(dir, 'b', 'disk1.img'));
      const bound = 8 * MiB + written * (4096 + 8) + 2 * MiB;
      assert.ok(hop2.bytes < bound, `the post-copy hop moved ${hop2.bytes} B; RAM and ${written} written blocks make ${bound} B`);
    }
    await new Promise((r) => setTimeout(r, 200));
    await c.pause();
    const out = sub('out');
    c.dumpDisks(out);
    const kase = { seed: 77, memory: '8MiB', disks: ['8MiB', '4MiB'], diskFill: '256KiB', workload: config.workload, fill: config.fill };
    assert.is(diffDisksAgainstReplay(out, kase, c.steps), null);
    const image = join(out, 'ram.img');
    c.memory.writeImage([0], image);
    assert.is(diffAgainstReplay(image, kase, c.steps), null);
  } catch (err) {
    // uvu cannot print an error whose details is an object (every MemshiftError): say it plainly.
    throw new Error(`${(err as { code?: string }).code ?? ''} ${(err as Error).message}`);
  } finally {
    await Promise.all([a.close(), b?.close(), c?.close()]);
    rmSync(dir, { recursive: true, force: true });
  }
}));
}

test.run();
