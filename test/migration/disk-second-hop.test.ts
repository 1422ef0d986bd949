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
import { diffDisksAgainstReplay, diffAgainstReplay } from '../_support/migration.js';
import { deadline } from '../_support/deadline.js';

const MiB = 1 << 20;

async function hop(source: SimulatedGuest, diskDir: string): Promise<{ guest: SimulatedGuest; blockBytes: number }> {
  const { server, address } = await listen('127.0.0.1:0');
  try {
    const receiving = receive({
      listen: server, security: 'insecure',
      createTarget: (regions: readonly Region[]) => SimulatedGuest.receiving(regions, {}, { storage: { diskDir, shared: false } }),
    });
    const report = await migrate(source, formatAddress(address), { security: 'insecure', mode: 'live', downtimeLimitMs: 50 });
    assert.is(report.outcome, 'completed');
    const { report: r, target } = await receiving;
    assert.is(r.outcome, 'completed');
    return { guest: target as SimulatedGuest, blockBytes: report.iterations.reduce((n, i) => n + (i.blocks?.bytes ?? 0), 0) };
  } finally {
    server.close();
  }
}

test('A → B → C with two local disks: C\'s RAM and disks equal the replay', deadline(90_000, async () => {
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
    const second = await hop(b, sub('c'));
    c = second.guest;
    // The second hop carries the blocks written so far, not the 12 MiB of holes (its RAM bytes depend on
    // how many passes the dirtying takes, so only the blocks' bytes are compared).
    assert.ok(first.blockBytes > 0, 'the first hop carried blocks');
    assert.ok(second.blockBytes < first.blockBytes + 4 * MiB, `second hop's blocks ${second.blockBytes} B, first's ${first.blockBytes} B`);
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

test.run();
