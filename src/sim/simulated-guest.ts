// The simulated guest: RAM in shared slabs, filled deterministically from its seed, and one vCPU
// thread running the workload. It is both a MemorySource (on the source host) and a MemoryTarget (on
// the destination, created empty from the handshake's regions and given its workload by the device
// state). Its memory after N steps depends only on its GuestConfig and N: the tests' oracle. Its RAM
// is one or more regions (ram-layout.ts); the vCPU runs over all of their slabs as one guest.

import { ErrorCode, MemshiftError, invalidArgument } from '../errors.js';
import { decodeCpuState, encodeCpuState, type CpuState } from './cpu-state.js';
import { FILL_CODE, type GuestConfig } from './guest-config.js';
import { GuestMemory, type GuestMemoryOptions } from '../memory/guest-memory.js';
import { Mailbox, createPageGateInit, type PageGateInit } from '../memory/page-gate.js';
import { kernelsOf, type Slab } from '../memory/slab.js';
import type { MemorySource, MemoryTarget, Region, SharedStorage } from '../memory/types.js';
import { ramRegions, ramRegionsOf } from './ram-layout.js';
import { Vcpu } from './vcpu.js';
import { StepRunner, initialCounters, workloadShape } from './workload.js';
import { GuestDisk, diskImagePath, fillDisk } from './disk.js';
import { DISK_BLOCK_BYTES, MAX_DISKS, MAX_DISK_BYTES } from './guest-config.js';
import { mkdtempSync, rmSync, statSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LeasedImages, UnnamedImages, runnerName } from '../storage/leased-images.js';
import { GuestNic, type NicEvents } from './guest-nic.js';
import type { GuestNetwork } from './cpu-state.js';
import { createOutputRing, drainOutputRing, type GuestOutput, type OutputSink } from './output-ring.js';

/** Where a guest's disks live (`disk0.img`, … in `diskDir`), and whether the other host reaches them too. */
export interface GuestStorageOptions {
  diskDir: string;
  /** On storage both hosts reach: the images are leased (one runner at a time) and never copied. */
  shared: boolean;
  leaseTtlMs?: number;
}

/** What a host gives a guest beyond its memory: where its disks live, and the device its NIC plugs into. */
export interface GuestHostOptions {
  storage?: GuestStorageOptions | null;
  /** A source guest's network identity (it then travels in the device state). */
  network?: GuestNetwork | null;
  /** The host device the guest's NIC is plugged into while it runs here; without one the identity travels and nothing is plugged. */
  nicDevice?: string | null;
  nicEvents?: NicEvents;
  /** The guest's outputs (output-ring.ts) are taken by this host (`takeOutputs`); without it the guest makes none. */
  outputs?: boolean;
  /**
   * A replicating primary: its pauses are checkpoints, so the NIC stays plugged through them (it goes
   * when the guest closes), and the service's answers are held by `holdReply` until committed.
   */
  replicated?: { holdReply(reply: () => void): void };
}

/**
 * Fills the RAM regions' slabs with the guest's initial contents, keyed by guest page (not region
 * page); with `mark`, each page written gets its bit in its slab's dirty bitmap.
 */
export function fillGuest(memory: GuestMemory, config: GuestConfig, mark = false): void {
  if (config.fill === 'zero') return;
  let base = 0;
  for (const r of ramRegionsOf(memory.regions).ram) {
    for (const s of memory.slabsOf(r.id)) {
      kernelsOf(s).raw.fillGuestPages(s.layout.ram, s.layout.pageSize, s.pageCount, base + s.firstPage, BigInt(config.seed), FILL_CODE[config.fill], mark ? s.layout.dirty : 0);
    }
    base += r.pageCount;
  }
}

/** Every RAM region's slabs in guest page order: the list the vCPU and its page gate index. */
export function ramSlabs(memory: GuestMemory): Slab[] {
  return ramRegionsOf(memory.regions).ram.flatMap((r) => [...memory.slabsOf(r.id)]);
}

export class SimulatedGuest implements MemorySource, MemoryTarget {
  private runAfterResume: number | null = null;
  private resumeStopAt: number | null = null;
  readonly memory: GuestMemory;
  /**
   * Its memory starts zero, and its fill and its vCPU mark every page they write; a receiving one is
   * fresh until its state is loaded. From then on it holds pages the engine wrote without marks (a
   * migration or a restore brought them), so as a source it must send every page.
   */
  get unwrittenPagesAreZero(): boolean {
    return !this.contentArrived;
  }

  private contentArrived = false;
  private disks: GuestDisk[] = [];
  private leased: LeasedImages | null = null;
  private fenced: MemshiftError | null = null;
  private readonly storageOptions: GuestStorageOptions | null;
  private readonly host: GuestHostOptions;
  private nic: GuestNic | null = null;
  /** A directory this guest made for its images (none was named): removed when it closes. */
  private temporaryDiskDir: string | null = null;
  private vcpu: Vcpu | null = null;
  private state: CpuState | null;
  /** Set when the guest runs post-copy: the vCPU waits on missing pages. */
  private gate: PageGateInit | null = null;
  private readonly outputRing: SharedArrayBuffer | null;

  private constructor(memory: GuestMemory, state: CpuState | null, host: GuestHostOptions) {
    this.memory = memory;
    this.state = state;
    this.host = host;
    this.storageOptions = host.storage ?? null;
    this.outputRing = host.outputs === true ? createOutputRing() : null;
  }

  /**
   * The outputs the guest made since the last call, oldest first (empty unless the host takes them).
   * Until they are taken the ring fills, and a full ring stops the vCPU: take them often.
   */
  takeOutputs(): GuestOutput[] {
    return this.outputRing === null ? [] : drainOutputRing(this.outputRing);
  }

  /**
   * A source guest: allocated, filled, vCPU created paused (call `resume` to start it). A guest with
   * disks needs `storage`; on shared storage it takes the images' leases before touching them
   * (MS_ERR_LEASE_HELD when another runner holds one), then creates them empty.
   */
  static create(config: GuestConfig, options: GuestMemoryOptions = {}, host: GuestHostOptions = {}): SimulatedGuest {
    const storage = host.storage ?? null;
    let leased: LeasedImages | null = null;
    if (config.disks.length > 0 && storage !== null && storage.shared) {
      leased = new LeasedImages(config.disks.map((_, i) => diskImagePath(storage.diskDir, i)), storage.leaseTtlMs);
      leased.take(runnerName('source'));
    }
    try {
      return SimulatedGuest.createLeased(config, options, host, leased);
    } catch (err) {
      leased?.release();
      throw err;
    }
  }

  private static createLeased(config: GuestConfig, options: GuestMemoryOptions, host: GuestHostOptions, leased: LeasedImages | null): SimulatedGuest {
    // Disks nobody gave a directory: a temporary one, removed when the guest closes.
    const temporary = config.disks.length > 0 && host.storage == null ? mkdtempSync(join(tmpdir(), 'memshift-disks-')) : null;
    const storage = host.storage ?? (temporary === null ? null : { diskDir: temporary, shared: false });
    const memory = GuestMemory.allocate(ramRegions(config), options);
    // The fill is a write like any other: each page it writes is marked, so that unwritten pages are
    // exactly the zero ones (and a first pass never reads, nor makes the host allocate, a page never written).
    fillGuest(memory, config, true);
    const shape = workloadShape(config);
    const guest = new SimulatedGuest(memory, {
      shape, fill: config.fill, seed: config.seed, stepsPerSecond: config.stepsPerSecond, counters: initialCounters(config),
      ...(config.disks.length > 0 ? { storage: leased !== null ? 'shared' as const : 'local' as const } : {}),
      ...(host.network != null ? { network: host.network } : {}),
    }, host);
    guest.nic = guest.nicFor(host.network ?? undefined);
    guest.temporaryDiskDir = temporary;
    try {
      for (let i = 0; i < config.disks.length; i++) guest.disks.push(GuestDisk.create(diskImagePath(storage!.diskDir, i), config.disks[i]));
      // A long fill blocks this thread's timers: the lease is renewed between its chunks instead.
      guest.disks.forEach((d, i) => fillDisk(d, i, config.diskFillBytes, config.seed, () => leased?.renewIfDue()));
    } catch (err) {
      for (const d of guest.disks) d.close();
      if (temporary !== null) rmSync(temporary, { recursive: true, force: true });
      void guest.vcpu?.exit();
      throw err;
    }
    if (leased !== null) guest.useLease(leased);
    guest.startVcpu();
    return guest;
  }

  /**
   * Shared storage's leases, once this guest has disks on it (the engine hands them over at switchover);
   * a receiving guest on shared storage has them before its device state arrives, to give back only.
   */
  get storage(): SharedStorage | null {
    if (this.leased !== null) return this.leased;
    const s = this.storageOptions;
    return s !== null && s.shared && this.state === null ? new UnnamedImages(s.diskDir, s.leaseTtlMs) : null;
  }

  /** Disks that move with the guest: those on this host's own storage. */
  get blockDevices(): readonly GuestDisk[] {
    return this.storageOptions?.shared === true ? [] : this.disks;
  }

  /**
   * A receiving guest's disks, as the source named them: new empty images in this host's disk
   * directory (a temporary one unless the host named one), written block by block as they arrive.
   * Refused (MS_ERR_HANDSHAKE_REJECTED) when the directory has less free space than the disks' size.
   */
  receiveBlockDevices(shapes: readonly { blockBytes: number; blocks: number }[]): readonly GuestDisk[] {
    if (this.disks.length > 0 || this.state !== null) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'this guest already has its disks');
    if (shapes.length > MAX_DISKS) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `${shapes.length} disks; a simulated guest has at most ${MAX_DISKS}`);
    for (const s of shapes) {
      if (s.blockBytes !== DISK_BLOCK_BYTES || s.blocks * DISK_BLOCK_BYTES > MAX_DISK_BYTES) {
        throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `a disk of ${s.blocks} blocks of ${s.blockBytes} B; a simulated guest's are ${DISK_BLOCK_BYTES} B blocks, at most 1 TiB`);
      }
    }
    if (this.storageOptions?.shared === true) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'this destination expects the guest\'s disks on shared storage, not moved');
    this.temporaryDiskDir ??= this.storageOptions === null ? mkdtempSync(join(tmpdir(), 'memshift-disks-')) : null;
    const dir = this.storageOptions?.diskDir ?? this.temporaryDiskDir!;
    // Admission: images are sparse, but every block may be written; a host takes only disks its
    // directory can hold whole (as it takes only RAM it has).
    const need = shapes.reduce((n, s) => n + s.blocks * s.blockBytes, 0);
    const fs = statfsSync(dir);
    const free = Number(fs.bavail) * Number(fs.bsize);
    if (need > free) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `the guest's disks need ${need} bytes; ${dir} has ${free} free`, { value: need, limit: free });
    const disks: GuestDisk[] = [];
    try {
      for (let i = 0; i < shapes.length; i++) disks.push(GuestDisk.create(diskImagePath(dir, i), shapes[i].blocks * shapes[i].blockBytes, true));
    } catch (err) {
      for (const d of disks) d.close();
      throw err;
    }
    this.disks = disks;
    return this.disks;
  }

  get reachesSharedStorage(): boolean {
    return this.storageOptions?.shared === true;
  }

  /** Copies the disk images into `dir` under their own names (disk0.img, …): a dump to compare with a replay's. */
  dumpDisks(dir: string): void {
    this.disks.forEach((d, i) => d.copyTo(diskImagePath(dir, i)));
  }

  /** The guest's disk images, in order (empty without disks, or before a receiving guest's state is loaded). */
  get diskImages(): readonly GuestDisk[] {
    return this.disks;
  }

  /** The guest's NIC on this host, when it has an identity and the host named a device for it. */
  private nicFor(identity: GuestNetwork | undefined): GuestNic | null {
    const device = this.host.nicDevice ?? null;
    if (identity === undefined || device === null) return null;
    return new GuestNic(identity, device, () => this.steps, this.host.nicEvents, this.host.replicated?.holdReply.bind(this.host.replicated) ?? null);
  }

  private useLease(leased: LeasedImages): void {
    this.leased = leased;
    leased.bind({
      // Self-fencing: a runner whose lease is gone stops its guest at once; it may not run again.
      onLost: (error) => {
        this.fenced = error;
        void this.vcpu?.pause().catch(() => undefined);
      },
      flush: () => {
        for (const d of this.disks) d.flushNow();
      },
    });
  }

  /**
   * A destination guest: empty memory for `regions`. Its vCPU thread starts now, idle, so that
   * resuming after the switchover costs a message rather than a thread start; the workload arrives
   * with the device state.
   */
  static receiving(regions: readonly Region[], options: GuestMemoryOptions = {}, host: GuestHostOptions = {}): SimulatedGuest {
    ramRegionsOf(regions);
    const guest = new SimulatedGuest(GuestMemory.allocate(regions, options), null, host);
    guest.vcpu = new Vcpu(ramSlabs(guest.memory), { stepsPerSecond: 0 });
    return guest;
  }

  get regions(): readonly Region[] {
    return this.memory.regions;
  }

  slabsOf(regionId: number): readonly Slab[] {
    return this.memory.slabsOf(regionId);
  }

  /** Steps executed so far (exact while paused). */
  get steps(): number {
    return this.vcpu?.isConfigured ? this.vcpu.steps : (this.state?.counters.steps ?? 0);
  }

  get running(): boolean {
    return this.vcpu?.isConfigured === true && this.vcpu.running;
  }

  get config(): CpuState | null {
    return this.state;
  }

  /** Page faults the vCPU took (post-copy). */
  get faults(): number {
    return this.gate === null ? 0 : Atomics.load(new Int32Array(this.gate.mailbox), Mailbox.FAULTS);
  }

  /** Creates the vCPU thread if needed and hands it the workload (once). */
  private startVcpu(): void {
    if (this.state === null) throw new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, 'guest has no device state to run');
    // A guest on shared storage runs only under its lease: a restored one takes it now (MS_ERR_LEASE_HELD
    // if another runner has it); a source took it when made, a destination accepted it at switchover.
    if (this.leased !== null && this.leased.holderName === null) this.leased.take(runnerName('runner'));
    this.vcpu ??= new Vcpu(ramSlabs(this.memory), { stepsPerSecond: this.state.stepsPerSecond });
    if (!this.vcpu.isConfigured) this.vcpu.configure(this.state.shape, this.state.counters, this.gate, this.state.stepsPerSecond, this.disks, this.outputRing);
  }

  async pause(): Promise<void> {
    if (this.vcpu === null || !this.vcpu.isConfigured) return;
    const counters = await this.vcpu.pause();
    if (this.state !== null) this.state.counters = counters;
    // Off the LAN while paused (a checkpoint's pause excepted); not awaited: the pause is on the
    // downtime's path, the NIC's steps are ordered.
    if (this.host.replicated === undefined) void this.nic?.unplug();
  }

  /** A receiving guest's vCPU thread has loaded (MemoryTarget.ready). */
  async ready(): Promise<void> {
    await this.vcpu?.ready();
  }

  async resume(): Promise<void> {
    if (this.fenced !== null) throw this.fenced;
    this.startVcpu();
    if (this.runAfterResume === null) {
      await this.vcpu!.resume();
      void this.nic?.plug();
      return;
    }
    // Paused here, so the state's counters are exact (the vCPU publishes its own count a batch late).
    this.resumeStopAt = (this.state?.counters.steps ?? this.steps) + this.runAfterResume;
    this.runAfterResume = null;
    await this.vcpu!.resumeUntil(this.resumeStopAt);
    void this.nic?.plug();
  }

  /**
   * The next resume runs exactly `steps` steps and then the guest pauses itself (`dest --run-steps`):
   * a destination that resumes at step S stops at S + steps whatever else is going on, so its memory
   * is the replay's of exactly that many steps.
   */
  limitRunAfterResume(steps: number): void {
    if (!Number.isSafeInteger(steps) || steps < 0) throw invalidArgument('steps', 'must be a non-negative integer', steps);
    this.runAfterResume = steps;
  }

  /**
   * Lets a limited resume run to its stop point, then pauses (the guest stays plugged in while it runs).
   * A guest that stopped short of it (paused by someone else) runs on to it paused.
   */
  async finishLimitedRun(): Promise<void> {
    const stopAt = this.resumeStopAt;
    if (stopAt === null || this.vcpu === null) return;
    if (this.vcpu.running) await this.vcpu.waitUntilPaused();
    await this.pause();
    if (this.steps < stopAt) await this.runUntil(stopAt);
  }

  /** Where the last limited resume stops (null: none was limited). */
  get stopAtAfterResume(): number | null {
    return this.resumeStopAt;
  }

  throttle(percent: number): void {
    this.vcpu?.throttle(percent);
  }

  get throttlePercent(): number {
    return this.vcpu?.throttlePercent ?? 0;
  }

  /** Runs until the guest has executed exactly `steps` steps in total, then leaves it paused. */
  async runUntil(steps: number): Promise<void> {
    this.startVcpu();
    const counters = await this.vcpu!.runUntil(steps);
    if (this.state !== null) this.state.counters = counters;
  }

  saveState(): Uint8Array {
    if (this.state === null) throw new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, 'guest has no device state');
    if (this.vcpu?.running) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'device state can only be saved while the guest is paused');
    const counters = this.vcpu?.isConfigured ? this.vcpu.counters() : this.state.counters;
    return encodeCpuState({ ...this.state, counters });
  }

  /**
   * Checks device state against the whole RAM (all regions: the guest's pages, whatever the cut) and,
   * for a guest with disks, against this host's view of the shared storage.
   */
  checkState(bytes: Uint8Array): void {
    const { pageSize, pageCount } = ramRegionsOf(this.memory.regions);
    this.checkDisks(decodeCpuState(bytes, { pageSize, pageCount }));
  }

  loadState(bytes: Uint8Array): void {
    const { pageSize, pageCount } = ramRegionsOf(this.memory.regions);
    const state = decodeCpuState(bytes, { pageSize, pageCount });
    if (this.vcpu?.isConfigured) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'device state loaded into a guest that already runs');
    this.checkDisks(state);
    const dir = this.storageOptions?.diskDir ?? '';
    const blocks = state.shape.diskBlocks;
    if (blocks.length > 0 && this.disks.length === 0) this.disks = blocks.map((b, i) => GuestDisk.open(diskImagePath(dir, i), b * DISK_BLOCK_BYTES));
    // Disks that moved were written here by the engine, unmarked: as a source again this guest must send them whole.
    if (state.storage === 'local') for (const d of this.disks) d.dirty.fill(-1);
    this.nic ??= this.nicFor(state.network);
    this.state = state;
    this.contentArrived = true;
  }

  private checkDisks(state: CpuState): void {
    const blocks = state.shape.diskBlocks;
    if (blocks.length === 0) return;
    if (state.storage === 'local') {
      // Moved block by block: the disks DISKS named are the ones the state describes.
      const got = this.disks.map((d) => d.blocks);
      if (got.length !== blocks.length || got.some((b, i) => b !== blocks[i])) {
        throw new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, `the guest has disks of ${blocks.join(', ')} blocks; ${got.length === 0 ? 'none arrived' : `${got.join(', ')} arrived`}`);
      }
      return;
    }
    const storage = this.storageOptions;
    if (storage === null || !storage.shared) {
      throw new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, `the guest has ${blocks.length} disk(s) on shared storage; this destination was not given it (--storage shared --disk-dir DIR)`);
    }
    blocks.forEach((b, i) => {
      const path = diskImagePath(storage.diskDir, i);
      let size: number;
      try {
        size = statSync(path).size;
      } catch (cause) {
        throw new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, `the guest's disk ${i} should be ${path} on shared storage: ${(cause as Error).message}`, { cause });
      }
      if (size !== b * DISK_BLOCK_BYTES) throw new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, `disk image ${path} is ${size} B; the guest's disk ${i} is ${b * DISK_BLOCK_BYTES} B`);
    });
    // From the first checked state on, the images' leases are known: a destination that fails before
    // the switchover gives back a lease the source may have handed over meanwhile.
    if (this.leased === null) this.useLease(new LeasedImages(blocks.map((_, i) => diskImagePath(storage.diskDir, i)), storage.leaseTtlMs));
  }

  /**
   * Arms post-copy: the vCPU (started by the next resume) blocks on pages whose `present` bit is
   * clear, posting them to the returned mailbox.
   */
  enablePageGate(): PageGateInit {
    if (this.vcpu?.isConfigured) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'post-copy must be armed before the guest first runs here');
    this.gate = createPageGateInit();
    return this.gate;
  }

  async release(): Promise<void> {
    await this.close();
  }

  /**
   * Stops the vCPU thread, frees the leases this side still holds (the guest no longer runs here) and
   * closes the disk images. The memory stays readable.
   */
  async close(): Promise<void> {
    const v = this.vcpu;
    if (v !== null) {
      if (this.state !== null && v.isConfigured && !v.running) this.state.counters = v.counters();
      await v.exit();
    }
    await this.nic?.unplug();
    this.leased?.release();
    for (const d of this.disks) d.close();
    if (this.temporaryDiskDir !== null) rmSync(this.temporaryDiskDir, { recursive: true, force: true });
  }
}

/**
 * Runs the guest defined by `config` for exactly `steps` steps on this thread (the reference run). The
 * memory has the guest's regions (`config.ramRegions`); its pages hold the same bytes whatever the cut.
 */
export function replay(config: GuestConfig, steps: number, options: GuestMemoryOptions = {}, diskDir: string | null = null, outputs: OutputSink | null = null): GuestMemory {
  if (!Number.isSafeInteger(steps) || steps < 0) throw invalidArgument('steps', 'must be a non-negative integer', steps);
  if (config.disks.length > 0 && diskDir === null) throw invalidArgument('diskDir', 'a guest with disks needs a directory for their images');
  const memory = GuestMemory.allocate(ramRegions(config), { arenaBytes: 1 << 16, ...options });
  fillGuest(memory, config);
  const runner = new StepRunner(workloadShape(config), ramSlabs(memory), initialCounters(config));
  runner.outputs = outputs;
  const disks = config.disks.map((bytes, i) => GuestDisk.create(diskImagePath(diskDir!, i), bytes));
  try {
    disks.forEach((d, i) => fillDisk(d, i, config.diskFillBytes, config.seed));
    runner.attachDisks(disks);
    const batch = 1 << 20;
    // A sink that fills up ends a batch early: run on until exactly `steps` ran.
    for (let done = 0; done < steps;) done += runner.run(Math.min(batch, steps - done));
  } finally {
    for (const d of disks) d.close();
  }
  return memory;
}
