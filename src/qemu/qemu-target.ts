// A QEMU waiting for an incoming migration (`-incoming defer`) as a memshift MemoryTarget: received
// pages are written into the files of its shared RAM backends at their offsets (file-pages.ts); the
// device state is QEMU's stream (device-envelope.ts), which it loads with migrate-incoming once every
// page is in, and only then does `cont` run the guest. The backends must match the source's one for one.
//
//   checkState (layout) ─► loadState (stream to a file) ─► resume: migrate-incoming ─► completed ─► cont

import { writeFileSync } from 'node:fs';
import { ErrorCode, MemshiftError, type GuestMemory, type MemoryTarget, type Region, type Slab } from '../index.js';
import { AttachedQemu } from './attached-qemu.js';
import { decodeDeviceEnvelope } from './device-envelope.js';
import type { Qmp } from './qmp.js';
import { awaitMigration, shellQuote } from './qemu-migration.js';

export interface QemuResume {
  /** The source QEMU's STOP and this QEMU's RESUME, by QEMU's clocks (µs since the epoch). */
  stoppedAtMicros: number;
  resumedAtMicros: number;
  /** How long loading QEMU's device stream took here (migrate-incoming to completed). */
  deviceLoadMs: number;
  /** Bytes of QEMU's device stream. */
  deviceStateBytes: number;
}

export class QemuTarget implements MemoryTarget {
  private stream: Uint8Array | null = null;
  private stoppedAtMicros = 0;
  /** Set once the guest runs here. */
  resumed: QemuResume | null = null;

  private constructor(private readonly qemu: AttachedQemu) {}

  /** Attaches to the QEMU behind `qmpPath`, which must be waiting for an incoming migration. */
  static async open(qmpPath: string): Promise<QemuTarget> {
    const qemu = await AttachedQemu.attach(
      qmpPath, 'dest', (s) => (s === 'inmigrate' ? null : ', not waiting for a migration: start the destination QEMU with -incoming defer'),
      // Before any source connects, as QEMU pre-allocates before `migrate-incoming`: which pages of its
      // RAM files are zero, so that zero pages received cost no write (and no read) there.
      (memory) => memory.learnZeroPagesInFiles(),
    );
    return new QemuTarget(qemu);
  }

  private get qmp(): Qmp {
    return this.qemu.qmp;
  }

  get memory(): GuestMemory {
    return this.qemu.memory;
  }

  get regions(): readonly Region[] {
    return this.memory.regions;
  }

  slabsOf(regionId: number): readonly Slab[] {
    return this.memory.slabsOf(regionId);
  }

  checkState(state: Uint8Array): void {
    const e = decodeDeviceEnvelope(state);
    const ours = this.qemu.backends.map((b) => `${b.id}:${b.bytes}`).join(', ');
    const theirs = e.backends.map((b) => `${b.id}:${b.bytes}`).join(', ');
    if (ours !== theirs) throw new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, `the source QEMU's RAM backends (${theirs}) are not this QEMU's (${ours})`);
  }

  loadState(state: Uint8Array): void {
    const e = decodeDeviceEnvelope(state);
    this.stream = e.stream.slice();
    this.stoppedAtMicros = e.stoppedAtMicros;
  }

  async resume(): Promise<void> {
    if (this.resumed !== null) return;
    if (this.stream === null) throw new MemshiftError(ErrorCode.QEMU, 'resume before the device state arrived');
    const stream = this.stream;
    // Every page is in the backing files by now (memshift resumes only after the final pass and the digest check).
    this.memory.closeFiles();
    let t = performance.now();
    const since = this.qmp.eventMark;
    let deviceLoadMs: number;
    try {
      await this.qemu.withDeviceFile(async (file) => {
        writeFileSync(file, stream);
        t = performance.now();
        await this.qmp.execute('migrate-incoming', { uri: `exec:cat ${shellQuote(file)}` });
        await awaitMigration(this.qmp, 'destination');
      });
      deviceLoadMs = performance.now() - t;
      await this.qmp.execute('cont');
    } catch (err) {
      // A guest that runs here after all (QEMU started it on its own) has resumed: saying otherwise
      // would let the source run it too.
      const status = await this.qmp.execute<{ status: string }>('query-status').catch(() => null);
      if (status?.status !== 'running') throw err;
      deviceLoadMs = performance.now() - t;
    }
    // QEMU sends RESUME before its answer to the command that started the guest.
    const resumed = this.qmp.eventsSince(since).find((e) => e.event === 'RESUME');
    this.resumed = { stoppedAtMicros: this.stoppedAtMicros, resumedAtMicros: resumed?.atMicros ?? Date.now() * 1000, deviceLoadMs, deviceStateBytes: this.stream.length };
  }

  /** Detaches: QEMU's migration settings as they were, the files closed. */
  async close(): Promise<void> {
    await this.qemu.detach();
  }
}
