// One QEMU as an adapter holds it, on either host: its QMP connection, its RAM backends as file-backed
// guest memory, the migration settings to put back, and a file for QEMU's device stream while it is
// written or read (in a directory made for that and removed after: an adapter killed before the
// switchover leaves nothing behind).
// `attach` checks the run state the role needs before it sets anything; `detach` undoes what it did.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, GuestMemory, MemshiftError } from '../index.js';
import { Qmp } from './qmp.js';
import { findRamBackends, ramRegionSpecs, type RamBackend } from './ram-backends.js';
import { enableIgnoreShared } from './qemu-migration.js';

export class AttachedQemu {
  private constructor(
    readonly qmp: Qmp, readonly backends: readonly RamBackend[], readonly memory: GuestMemory, private readonly role: 'source' | 'dest',
    /** QEMU's run state when attached (query-status). */
    readonly status: string,
    private readonly restoreSettings: () => Promise<void>,
  ) {}

  /**
   * Connects to the QEMU behind `qmpPath`. `refuse(status)` says why a QEMU in that run state cannot
   * take this role (the rest of the message after "QEMU (path) is <status>"), or null; `prepare` sees the
   * guest memory before the settings change (a destination learns its zero pages there).
   */
  static async attach(qmpPath: string, role: 'source' | 'dest', refuse: (status: string) => string | null, prepare: (memory: GuestMemory) => void = () => undefined): Promise<AttachedQemu> {
    const qmp = await Qmp.connect(qmpPath);
    try {
      const { status } = await qmp.execute<{ status: string }>('query-status');
      const why = refuse(status);
      if (why !== null) throw new MemshiftError(ErrorCode.QEMU, `QEMU (${qmpPath}) is ${status}${why}`);
      const backends = await findRamBackends(qmp);
      const memory = GuestMemory.allocate(ramRegionSpecs(backends));
      prepare(memory);
      const restore = await enableIgnoreShared(qmp);
      return new AttachedQemu(qmp, backends, memory, role, status, restore);
    } catch (err) {
      qmp.close();
      throw err;
    }
  }

  /** Runs `use` with the path of a device-stream file in a new directory, removed once `use` settles. */
  async withDeviceFile<T>(use: (path: string) => Promise<T>): Promise<T> {
    const dir = mkdtempSync(join(tmpdir(), `memshift-qemu-${this.role}-`));
    try {
      return await use(join(dir, 'devices.bin'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /**
   * QEMU's migration settings as they were, the connection and the files closed. The last two happen
   * even when the settings cannot be restored (a QEMU that died), whose error is then the one thrown.
   */
  async detach(): Promise<void> {
    try {
      await this.restoreSettings();
    } finally {
      this.qmp.close();
      this.memory.closeFiles();
    }
  }
}
