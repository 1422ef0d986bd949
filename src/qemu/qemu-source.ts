// A running QEMU guest as a memshift MemorySource: its RAM is the files of its shared memory backends
// (ram-backends.ts), read at their offsets and hash-scanned for what changed (no dirty log reaches
// memshift from QEMU); its vCPUs and devices are QEMU's, moved by QEMU's own migration with
// x-ignore-shared, which the adapter runs into a file once the guest is stopped, beside the final pass.
//
//   pause: stop ─► (migrate exec:cat > devices, in the background) │ saveState: ◄─ the stream, wrapped
//   resume (failure before the destination runs): cont

import { readFileSync } from 'node:fs';
import { ErrorCode, MemshiftError, type GuestMemory, type MemorySource, type Region, type Slab } from '../index.js';
import { AttachedQemu } from './attached-qemu.js';
import { encodeDeviceEnvelope } from './device-envelope.js';
import type { Qmp } from './qmp.js';
import { awaitMigration, shellQuote } from './qemu-migration.js';

export class QemuSource implements MemorySource {
  /** QEMU's STOP event time (µs since the epoch) of the pause, once paused. */
  stoppedAtMicros: number | null = null;
  private deviceSave: Promise<Uint8Array> | null = null;
  private throttleTimer: NodeJS.Timeout | null = null;
  /** A throttle period has stopped the guest and not yet let it run again. */
  private stoppedByThrottle = false;

  private constructor(
    private readonly qemu: AttachedQemu,
    /** Whether the guest ran when the adapter attached: a paused one is not started by a failed migration. */
    private readonly wasRunning: boolean,
  ) {}

  /** Attaches to the QEMU behind `qmpPath` (running or paused): finds its RAM files and sets what the device migration needs. */
  static async open(qmpPath: string): Promise<QemuSource> {
    const qemu = await AttachedQemu.attach(qmpPath, 'source', (s) => (s === 'running' || s === 'paused' ? null : ': a source must be running or paused'));
    return new QemuSource(qemu, qemu.status === 'running');
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

  async pause(): Promise<void> {
    this.stopThrottle(false);
    if (this.deviceSave !== null) return;
    await this.qmp.execute('stop');
    // QEMU sends STOP before its answer to `stop`; a guest the throttle had stopped already sends none,
    // and its downtime began at the throttle's STOP.
    const stopped = this.qmp.lastEvent('STOP');
    this.stoppedAtMicros = stopped?.atMicros ?? Date.now() * 1000;
    // QEMU's device stream is written while memshift sends the final pages (they do not touch it).
    this.deviceSave = this.saveDevices();
    this.deviceSave.catch(() => undefined);
  }

  private saveDevices(): Promise<Uint8Array> {
    return this.qemu.withDeviceFile(async (file) => {
      await this.qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(file)}` });
      await awaitMigration(this.qmp, 'source');
      return readFileSync(file);
    });
  }

  async saveState(): Promise<Uint8Array> {
    if (this.deviceSave === null || this.stoppedAtMicros === null) throw new MemshiftError(ErrorCode.QEMU, 'device state asked for before the guest was paused');
    const stream = await this.deviceSave;
    return encodeDeviceEnvelope({ backends: this.qemu.backends.map((b) => ({ id: b.id, bytes: b.bytes })), stoppedAtMicros: this.stoppedAtMicros, stream });
  }

  /** After a failure before the destination ran the guest: the guest runs on here (if it ran before). */
  async resume(): Promise<void> {
    this.stopThrottle(false);
    if (this.deviceSave !== null) {
      // A device save under way finishes (or fails) first: `cont` during a migration is refused.
      await this.deviceSave.catch(() => this.qmp.execute('migrate_cancel').catch(() => undefined));
      this.deviceSave = null;
    }
    if (this.wasRunning) await this.qmp.execute('cont');
  }

  /**
   * Auto-converge from outside QEMU: the guest is stopped for `percent` of every 100 ms (QEMU's own
   * throttle sleeps its vCPU threads the same share of each period). 0 ends it, the guest running.
   */
  throttle(percent: number): void {
    this.stopThrottle(true);
    if (percent <= 0) return;
    const period = 100;
    const tick = (): void => {
      this.stoppedByThrottle = true;
      void this.qmp.execute('stop').then(() => new Promise((r) => setTimeout(r, (period * percent) / 100))).then(() => {
        // Ended meanwhile: by a pause (which keeps the guest stopped) or by throttle(0) (which sent `cont`).
        if (this.throttleTimer === null) return undefined;
        this.stoppedByThrottle = false;
        return this.qmp.execute('cont');
      }).catch(() => undefined);
    };
    this.throttleTimer = setInterval(tick, period);
  }

  /** Ends the throttle; with `run`, a guest a period left stopped runs again (QMP keeps order: after that `stop`). */
  private stopThrottle(run: boolean): void {
    if (this.throttleTimer !== null) clearInterval(this.throttleTimer);
    this.throttleTimer = null;
    if (run && this.stoppedByThrottle) void this.qmp.execute('cont').catch(() => undefined);
    this.stoppedByThrottle = false;
  }

  /**
   * Detaches: QEMU's migration settings as they were (a guest that moved leaves a stopped QEMU, one that
   * did not a QEMU as it was), the files closed, the work directory removed.
   */
  async close(): Promise<void> {
    this.stopThrottle(true);
    await this.qemu.detach();
  }
}
