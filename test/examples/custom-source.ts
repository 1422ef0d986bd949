// Example: an integrator's own guest, live-migrated by memshift. Not the simulated guest of memshift/sim:
// `ExampleGuest` is what a hypervisor writes. Its RAM is allocated by memshift (`GuestMemory`), so the
// engine's encoder threads read it in place and the destination receives straight into it. Its "vCPU"
// is a 1 ms timer that writes pages and marks each one dirty after the write (or, with
// dirtyLog 'external', logs it in its own set, merged in `collectDirtyLog`). Pause, resume, throttle and
// a 16-byte device state complete the MemorySource; the same class is the MemoryTarget on the destination.
//
//   node dist/test/examples/custom-source.js [external]
//
// main() migrates a 16 MiB guest to receive() in this process over 127.0.0.1 with a generated PSK and
// returns both memories' SHA-256 at the switchover. Imports come from the public entry only (`memshift`).

import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import {
  ErrorCode, GuestMemory, MemshiftError, generatePsk, listen, migrate, receive,
  type MemorySource, type MemoryTarget, type Progress, type Region, type Report, type Slab,
} from '../../src/index.js';

const PAGE_SIZE = 4096;
const RAM = 0;

/** What the vCPU needs to continue elsewhere: its PRNG and tick count (the device state). */
export interface VcpuState {
  prng: number;
  tick: number;
}

//   device state (16 bytes, little-endian): u32 magic "EXG1" | u32 pageCount | u32 prng | u32 tick
const STATE_MAGIC = 0x31475845;
export const STATE_BYTES = 16;

export function encodeVcpuState(s: VcpuState, pageCount: number): Uint8Array {
  const out = new Uint8Array(STATE_BYTES);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, STATE_MAGIC, true);
  dv.setUint32(4, pageCount, true);
  dv.setUint32(8, s.prng, true);
  dv.setUint32(12, s.tick, true);
  return out;
}

/**
 * Device state arrives from the network: check everything before use. A MemshiftError with
 * MS_ERR_DEVICE_STATE_INVALID (or any Error, which memshift wraps in that code) refuses the migration.
 */
export function decodeVcpuState(bytes: Uint8Array, pageCount: number): VcpuState {
  const bad = (why: string): MemshiftError => new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, `example guest state: ${why}`);
  if (bytes.length !== STATE_BYTES) throw bad(`${bytes.length} bytes, expected ${STATE_BYTES}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== STATE_MAGIC) throw bad('bad magic');
  if (dv.getUint32(4, true) !== pageCount) throw bad(`made for ${dv.getUint32(4, true)} pages, this guest has ${pageCount}`);
  const prng = dv.getUint32(8, true);
  if (prng === 0) throw bad('PRNG state 0');
  return { prng, tick: dv.getUint32(12, true) };
}

/** The guest's RAM as memshift regions: one RAM region of 4 KiB pages. */
export function ramRegion(pages: number): Region[] {
  return [{ id: RAM, name: 'ram', kind: 'ram', pageSize: PAGE_SIZE, pageCount: pages }];
}

export interface ExampleGuestOptions {
  /** Guest RAM in 4 KiB pages. */
  pages: number;
  seed?: number;
  /** Pages the vCPU writes per 1 ms tick at full speed. */
  writesPerTick?: number;
  /** 'mark': markDirty after each write (default); 'external': the guest's own log, merged in collectDirtyLog. */
  dirtyLog?: 'mark' | 'external';
}

export class ExampleGuest implements MemorySource, MemoryTarget {
  readonly memory: GuestMemory;
  /** Memory starts zeroed and every write (the initial fill too) is marked: never-written pages need not be sent. */
  readonly unwrittenPagesAreZero = true;
  /** Destination only: called in resume() before the vCPU runs (the example hashes memory there). */
  beforeRun: (() => void) | null = null;
  private state: VcpuState | null;
  private readonly writesPerTick: number;
  /** Set when the dirty log lives outside memshift (a KVM-style log); drained by collectDirtyLog. */
  private readonly externalLog: Set<number> | null;
  private timer: NodeJS.Timeout | null = null;
  private throttlePercent = 0;
  private released = false;
  /** Throttle percentages memshift asked for, in order. */
  readonly throttles: number[] = [];

  private constructor(memory: GuestMemory, state: VcpuState | null, options: Omit<ExampleGuestOptions, 'pages'>) {
    this.memory = memory;
    this.state = state;
    this.writesPerTick = options.writesPerTick ?? 32;
    this.externalLog = options.dirtyLog === 'external' ? new Set() : null;
  }

  /** A source guest: RAM allocated by memshift, three pages in four filled, the vCPU paused until resume(). */
  static create(options: ExampleGuestOptions): ExampleGuest {
    // cacheBytes gives the source an XBZRLE cache (pages re-sent as deltas); 0, the default, disables it.
    const memory = GuestMemory.allocate(ramRegion(options.pages), { cacheBytes: 4 << 20 });
    const guest = new ExampleGuest(memory, { prng: (options.seed ?? 1) >>> 0 || 1, tick: 0 }, options);
    for (let page = 0; page < options.pages; page++) {
      if (page % 4 === 3) continue; // left zero and never written: not sent at all
      guest.words(page).fill(Math.imul(page + 1, 0x9e3779b1));
      guest.noteWrite(page);
    }
    return guest;
  }

  /** A destination guest for the regions the source announced; throwing here refuses the migration. */
  static receiving(regions: readonly Region[]): ExampleGuest {
    if (regions.length !== 1 || regions[0].kind !== 'ram' || regions[0].pageSize !== PAGE_SIZE) {
      throw new Error(`expected one RAM region of ${PAGE_SIZE}-byte pages`);
    }
    return new ExampleGuest(GuestMemory.allocate(regions), null, {});
  }

  /** The guest `create(options)` makes, after exactly `ticks` ticks at full speed: the oracle for tests. */
  static replay(options: ExampleGuestOptions, ticks: number): ExampleGuest {
    const guest = ExampleGuest.create(options);
    for (let i = 0; i < ticks; i++) guest.tick();
    return guest;
  }

  get regions(): readonly Region[] {
    return this.memory.regions;
  }

  slabsOf(regionId: number): readonly Slab[] {
    return this.memory.slabsOf(regionId);
  }

  /** Ticks run so far: memshift reports it as the guest's step rate. */
  get steps(): number {
    return this.state?.tick ?? 0;
  }

  get running(): boolean {
    return this.timer !== null;
  }

  /** A live view of a page as 32-bit words (no copy: the slab's own memory). */
  private words(page: number): Uint32Array {
    const v = this.memory.pageView(RAM, page);
    return new Uint32Array(v.buffer, v.byteOffset, v.byteLength / 4);
  }

  /** Called after every write: mark it now, or log it for collectDirtyLog. */
  private noteWrite(page: number): void {
    if (this.externalLog !== null) this.externalLog.add(page);
    else this.memory.markDirty(RAM, page);
  }

  /** One vCPU tick: write a few pages (fewer while throttled), 16 bytes each, then mark them. */
  private tick(): void {
    const s = this.state!;
    const n = Math.round((this.writesPerTick * (100 - this.throttlePercent)) / 100);
    const pages = this.memory.regions[0].pageCount;
    for (let i = 0; i < n; i++) {
      s.prng ^= s.prng << 13;
      s.prng ^= s.prng >>> 17;
      s.prng ^= s.prng << 5;
      s.prng >>>= 0;
      const page = s.prng % pages;
      const w = this.words(page);
      const at = ((s.prng >>> 16) & 255) * 4;
      w[at] = s.tick;
      w[at + 1] = page;
      w[at + 2] = s.prng;
      w[at + 3] = ~s.prng;
      // After the write, never before: a sync between a mark and its write would send the old page and clear the mark.
      this.noteWrite(page);
    }
    s.tick++;
  }

  // ── MemorySource ──────────────────────────────────────────────────────────────────────────────────

  /** memshift calls this before every dirty-bitmap sync (each pass, and after pause()). */
  collectDirtyLog(): void {
    if (this.externalLog === null) return;
    for (const page of this.externalLog) this.memory.markDirty(RAM, page);
    this.externalLog.clear();
  }

  /** Must resolve only when nothing writes guest memory any more: clearing the timer is enough here. */
  async pause(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Source: after a failed or cancelled migration. Destination: the guest starts here. */
  async resume(): Promise<void> {
    if (this.released) throw new Error('the guest was released: it runs on the destination now');
    if (this.state === null) throw new Error('no device state loaded');
    if (this.timer !== null) return;
    this.beforeRun?.();
    this.beforeRun = null;
    this.timer = setInterval(() => this.tick(), 1);
  }

  throttle(percent: number): void {
    this.throttles.push(percent);
    this.throttlePercent = percent;
  }

  /** Only called while paused, so the state is exact. */
  saveState(): Uint8Array {
    if (this.state === null) throw new Error('no device state');
    return encodeVcpuState(this.state, this.memory.regions[0].pageCount);
  }

  /** The destination runs the guest: this copy must never run again (its memory stays readable). */
  async release(): Promise<void> {
    await this.pause();
    this.released = true;
  }

  // ── MemoryTarget ──────────────────────────────────────────────────────────────────────────────────

  checkState(bytes: Uint8Array): void {
    decodeVcpuState(bytes, this.memory.regions[0].pageCount);
  }

  loadState(bytes: Uint8Array): void {
    this.state = decodeVcpuState(bytes, this.memory.regions[0].pageCount);
  }

  /** SHA-256 of the whole RAM (call while paused for a stable answer). */
  sha256(): string {
    const h = createHash('sha256');
    for (let page = 0; page < this.memory.regions[0].pageCount; page++) h.update(this.memory.pageView(RAM, page));
    return h.digest('hex');
  }

  /** A copy of the whole RAM. */
  copyRam(): Buffer {
    const pages = this.memory.regions[0].pageCount;
    const out = Buffer.allocUnsafe(pages * PAGE_SIZE);
    for (let page = 0; page < pages; page++) out.set(this.memory.pageView(RAM, page), page * PAGE_SIZE);
    return out;
  }

  /** Stops the vCPU for good. */
  async close(): Promise<void> {
    await this.release();
  }
}

export interface CustomSourceResult {
  /** The source's report (outcome 'completed'). */
  report: Report;
  destinationReport: Report;
  /** SHA-256 of the source's RAM after migrate() resolved: paused at the switchover, never resumed. */
  sourceSha256: string;
  /** SHA-256 of the destination's RAM when resume() was called, before its vCPU ran. */
  destinationSha256AtResume: string;
  /** Ticks the source ran before it paused for the switchover, and the destination's tick count later. */
  ticksAtSwitchover: number;
  destinationTicks: number;
  progressSamples: number;
}

export async function main(options: { dirtyLog?: 'mark' | 'external'; log?: (line: string) => void } = {}): Promise<CustomSourceResult> {
  const log = options.log ?? ((): void => undefined);
  // Both ends hold the same pre-shared key (TLS 1.3 PSK); across hosts, share it with formatPskFile / loadPskFile.
  const security = generatePsk('example');
  const source = ExampleGuest.create({ pages: 4096, seed: 7, writesPerTick: 32, dirtyLog: options.dirtyLog });
  await source.resume();
  await new Promise((r) => setTimeout(r, 30));

  const { server, address } = await listen('127.0.0.1:0');
  let target: ExampleGuest | null = null;
  let atResume: Buffer | null = null;
  const destination = receive({
    listen: server,
    security,
    createTarget: (regions) => {
      const t = ExampleGuest.receiving(regions);
      // A copy rather than a hash of 16 MiB: it runs inside the downtime (the report's resumeMs, ~10 ms here).
      t.beforeRun = () => (atResume = t.copyRam());
      return (target = t);
    },
  });
  let samples = 0;
  try {
    const report = await migrate(source, address, {
      security,
      mode: 'live',
      downtimeLimitMs: 50,
      onProgress: (p: Progress) => {
        samples++;
        log(`${p.role} ${p.phase} pass ${p.iteration}: ${p.remainingPages} pages to go, ${(p.bytesTransferred / 2 ** 20).toFixed(1)} MiB sent`);
      },
    });
    const { report: destinationReport } = await destination;
    const ticksAtSwitchover = source.steps;
    const sourceSha256 = source.sha256();
    await new Promise((r) => setTimeout(r, 20));
    const t = target as ExampleGuest | null;
    await t?.pause();
    return {
      report, destinationReport, sourceSha256,
      destinationSha256AtResume: atResume === null ? '' : createHash('sha256').update(atResume).digest('hex'),
      ticksAtSwitchover, destinationTicks: t?.steps ?? 0, progressSamples: samples,
    };
  } finally {
    server.close();
    await source.close();
    await (target as ExampleGuest | null)?.close();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await main({ dirtyLog: process.argv[2] === 'external' ? 'external' : 'mark', log: console.log });
  console.log(`${r.report.outcome} in ${r.report.totalTimeMs.toFixed(1)} ms, ${r.report.iterations.length} passes, downtime ${r.report.downtimeMs?.toFixed(1)} ms`);
  console.log(`source      ${r.sourceSha256} (tick ${r.ticksAtSwitchover})`);
  console.log(`destination ${r.destinationSha256AtResume} at resume; ${r.sourceSha256 === r.destinationSha256AtResume ? 'identical' : 'DIFFERENT'}; ran on to tick ${r.destinationTicks}`);
}
