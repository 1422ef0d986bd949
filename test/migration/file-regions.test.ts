// File-backed regions (types.ts, RegionFile): a guest whose RAM lives in a file another writer changes,
// as QEMU's memory-backend-file,share=on, migrated by migrate() and receive() in one process over
// loopback into a destination file. No dirty log exists: hash-scan finds what changed. The oracle is
// the two files, bit for bit.

import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode } from '../../src/errors.js';
import { GuestMemory, listen, migrate, receive, type MemshiftError } from '../../src/index.js';
import type { MemorySource, MemoryTarget, Region } from '../../src/memory/types.js';
import { perTestDir } from '../_support/per-test-dir.js';
import { within } from '../_support/mirror-guest.js';

const PAGE = 4096;
const dir = perTestDir(test, 'file-regions');

/** A guest whose "vCPU" is a 1 ms timer that runs `tick` once per round while the guest runs. */
abstract class TickingGuest implements MemorySource {
  private timer: NodeJS.Timeout | null = null;
  round = 0;

  constructor(readonly memory: GuestMemory) {}

  get regions(): readonly Region[] {
    return this.memory.regions;
  }

  slabsOf(id: number) {
    return this.memory.slabsOf(id);
  }

  protected abstract tick(): void;

  start(): void {
    this.timer ??= setInterval(() => {
      this.round++;
      this.tick();
    }, 1);
  }

  /** A running guest writes up to the instant it stops: one last round, which only the scan after the pause can find. */
  async pause(): Promise<void> {
    if (this.timer === null) return;
    clearInterval(this.timer);
    this.timer = null;
    this.round++;
    this.tick();
  }

  async resume(): Promise<void> {
    this.start();
  }

  throttle(): void {}

  saveState(): Uint8Array {
    return new Uint8Array([7, 7]);
  }
}

/** The "hypervisor": its guest writes pages of the file, a pattern per (round, page), while it runs. */
class FileGuest extends TickingGuest {
  private fd: number;
  written = 0;

  constructor(readonly path: string, readonly pages: number, readonly offset = 0, private readonly perTick = 0) {
    super(GuestMemory.allocate([{ id: 0, name: 'ram', kind: 'ram', pageSize: PAGE, pageCount: pages, file: { path, offset } }], { maxSlabBytes: 1 << 20, arenaBytes: 17 << 20 }));
    this.fd = openSync(path, 'r+');
  }

  /** Writes `count` pages from `first` (wrapping) with this round's pattern. */
  write(first: number, count: number): void {
    const page = new Uint8Array(PAGE);
    for (let i = 0; i < count; i++) {
      const p = (first + i) % this.pages;
      new DataView(page.buffer).setUint32(0, this.round * 100003 + p, true);
      page.fill((p + this.round) & 0xff, 4, 64);
      writeSync(this.fd, page, 0, PAGE, this.offset + p * PAGE);
      this.written++;
    }
  }

  override start(): void {
    if (this.perTick > 0) super.start();
  }

  protected tick(): void {
    this.write((this.round * 37) % this.pages, this.perTick);
  }

  close(): void {
    void this.pause();
    closeSync(this.fd);
  }
}

class FileTarget implements MemoryTarget {
  readonly memory: GuestMemory;
  resumed = false;

  /** `learn`: note the file's zero pages first (learnZeroPages), as qemu-dest does; else each zero page received is checked against the file. */
  constructor(regions: readonly Region[], path: string, offset = 0, learn = false) {
    this.memory = GuestMemory.allocate(regions.map((r) => ({ ...r, file: { path, offset } })), { maxSlabBytes: 1 << 20, arenaBytes: 17 << 20 });
    if (learn) this.memory.learnZeroPagesInFiles();
  }

  get regions(): readonly Region[] {
    return this.memory.regions;
  }

  slabsOf(id: number) {
    return this.memory.slabsOf(id);
  }

  checkState(state: Uint8Array): void {
    if (state.length !== 2) throw new Error('not our device state');
  }

  loadState(): void {}

  async resume(): Promise<void> {
    this.resumed = true;
  }
}

/** A file of `pages` pages: page p holds its number and a fill when p % every === 0, zeros elsewhere. */
function makeImage(path: string, pages: number, every: number, seed: number, lead = 0): void {
  const image = new Uint8Array(lead + pages * PAGE);
  for (let p = 0; p < pages; p += every) {
    new DataView(image.buffer).setUint32(lead + p * PAGE, p + seed, true);
    image.fill((p * 7 + seed) & 0xff, lead + p * PAGE + 8, lead + p * PAGE + 200);
  }
  writeFileSync(path, image);
}

async function migrateFile(mode: 'cold' | 'warm' | 'live', guest: FileGuest, destPath: string, destOffset = 0, learn = false) {
  const { server, address } = await listen('127.0.0.1:0');
  let target: FileTarget | null = null;
  try {
    const dest = receive({ security: 'insecure', listen: server, createTarget: (r) => (target = new FileTarget(r, destPath, destOffset, learn)) });
    guest.start();
    const report = await within(migrate(guest, address, { security: 'insecure', mode, downtimeLimitMs: 50 }), 60_000, `${mode} migrate`);
    const result = await within(dest, 60_000, 'receive');
    return { report, result, target: target! };
  } finally {
    server.close();
  }
}

for (const [mode, learn] of [['cold', false], ['warm', true], ['live', false], ['live', true]] as const) {
  test(`${mode}${learn ? ', destination zero pages learnt first' : ''}: a file-backed guest arrives in the destination's file bit for bit; pages the source holds as zeros are zeroed there`, async () => {
    const pages = 1024;
    const src = dir.file('src.img');
    const dst = dir.file('dst.img');
    makeImage(src, pages, 3, 1);
    // The destination's file starts with other content (as a QEMU's RAM file holds its ROMs).
    makeImage(dst, pages, 5, 99);
    const guest = new FileGuest(src, pages, 0, mode === 'live' ? 4 : 0);
    try {
      const { report, result, target } = await migrateFile(mode, guest, dst, 0, learn);
      assert.is(report.outcome, 'completed');
      assert.is(result.report.outcome, 'completed');
      assert.ok(target.resumed);
      const a = readFileSync(src);
      const b = readFileSync(dst);
      assert.is(b.length, a.length);
      assert.ok(a.equals(b), 'the destination file differs from the source file');
      if (mode === 'live') {
        assert.ok(guest.written > 0, 'the guest wrote during the migration');
        // Pages written after pass 1 were found by hash-scan and sent again.
        const later = report.iterations.slice(1).reduce((n, it) => n + it.pages, 0);
        assert.ok(later > 0, `no page was sent after pass 1 (${report.iterations.length} passes)`);
      }
    } finally {
      guest.close();
    }
  });
}

test('a region at an offset of its file moves only its pages, into the destination file at its offset', async () => {
  const pages = 256;
  const src = dir.file('src-off.img');
  const dst = dir.file('dst-off.img');
  makeImage(src, pages, 2, 5, 3 * PAGE);
  makeImage(dst, pages, 7, 50, 5 * PAGE);
  const dstLead = readFileSync(dst).subarray(0, 5 * PAGE);
  const guest = new FileGuest(src, pages, 3 * PAGE);
  try {
    const { report } = await migrateFile('warm', guest, dst, 5 * PAGE);
    assert.is(report.outcome, 'completed');
    const a = readFileSync(src).subarray(3 * PAGE);
    const b = readFileSync(dst);
    assert.ok(b.subarray(5 * PAGE).equals(a), 'the region differs');
    assert.ok(b.subarray(0, 5 * PAGE).equals(dstLead), 'bytes before the region were touched');
  } finally {
    guest.close();
  }
});

/** An in-memory guest whose "vCPU" (the timer) rewrites a few pages every millisecond, marking them dirty. */
class MemoryGuest extends TickingGuest {
  constructor(readonly pages: number) {
    super(GuestMemory.allocate([{ id: 0, name: 'ram', kind: 'ram', pageSize: PAGE, pageCount: pages }], { maxSlabBytes: 1 << 20, arenaBytes: 17 << 20, cacheBytes: 1 << 20 }));
    for (let p = 0; p < pages; p++) this.write(p);
  }

  private write(p: number): void {
    const view = this.memory.pageView(0, p);
    view.fill((p * 13 + this.round) & 0xff, 0, 512);
    new DataView(view.buffer, view.byteOffset, PAGE).setUint32(1000, this.round, true);
    this.memory.markDirty(0, p);
  }

  protected tick(): void {
    for (let i = 0; i < 8; i++) this.write((this.round * 8 + i) % this.pages);
  }
}

test('an in-memory source with XBZRLE on, into a file-backed target: no delta is negotiated (its base is not in the window), and the file equals the source', async () => {
  const pages = 512;
  const dst = dir.file('xb-dst.img');
  makeImage(dst, pages, 3, 7);
  const guest = new MemoryGuest(pages);
  const { server, address } = await listen('127.0.0.1:0');
  try {
    const dest = receive({ security: 'insecure', listen: server, createTarget: (r) => new FileTarget(r, dst) });
    guest.start();
    const report = await within(migrate(guest, address, { security: 'insecure', mode: 'live', xbzrle: 'on', downtimeLimitMs: 50 }), 60_000, 'migrate');
    const result = await within(dest, 60_000, 'receive');
    assert.is(report.outcome, 'completed');
    assert.is(result.report.outcome, 'completed');
    assert.ok(report.iterations.length >= 2, 'a later pass ran');
    assert.is(report.pagesByEncoding.xbzrle, 0, 'no page went as a delta');
    const file = readFileSync(dst);
    for (let p = 0; p < pages; p++) {
      assert.ok(Buffer.from(guest.memory.readPage(0, p)).equals(file.subarray(p * PAGE, (p + 1) * PAGE)), `page ${p}`);
    }
  } finally {
    await guest.pause();
    server.close();
  }
});

test('a source file shorter than its region fails the migration with MS_ERR_IO naming the file', async () => {
  const src = dir.file('short.img');
  const dst = dir.file('short-dst.img');
  makeImage(src, 100, 1, 3);
  makeImage(dst, 128, 1, 4);
  const guest = new FileGuest(src, 128);
  let err: MemshiftError | null = null;
  try {
    await migrateFile('cold', guest, dst);
  } catch (e) {
    err = e as MemshiftError;
  } finally {
    guest.close();
  }
  assert.is(err?.code, ErrorCode.IO);
  assert.match(err!.message, /short\.img ends before page 100/);
});

test.run();
