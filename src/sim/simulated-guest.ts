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
import type { MemorySource, MemoryTarget, Region } from '../memory/types.js';
import { ramRegions, ramRegionsOf } from './ram-layout.js';
import { Vcpu } from './vcpu.js';
import { StepRunner, initialCounters, workloadShape } from './workload.js';

/** Fills the RAM regions' slabs with the guest's initial contents, keyed by guest page (not region page). */
export function fillGuest(memory: GuestMemory, config: GuestConfig): void {
  if (config.fill === 'zero') return;
  let base = 0;
  for (const r of ramRegionsOf(memory.regions).ram) {
    for (const s of memory.slabsOf(r.id)) {
      kernelsOf(s).raw.fillGuestPages(s.layout.ram, s.layout.pageSize, s.pageCount, base + s.firstPage, BigInt(config.seed), FILL_CODE[config.fill]);
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
  private vcpu: Vcpu | null = null;
  private state: CpuState | null;
  /** Set when the guest runs post-copy: the vCPU waits on missing pages. */
  private gate: PageGateInit | null = null;

  private constructor(memory: GuestMemory, state: CpuState | null) {
    this.memory = memory;
    this.state = state;
  }

  /** A source guest: allocated, filled, vCPU created paused (call `resume` to start it). */
  static create(config: GuestConfig, options: GuestMemoryOptions = {}): SimulatedGuest {
    const memory = GuestMemory.allocate(ramRegions(config), options);
    fillGuest(memory, config);
    // The fill is a write like any other: marked, so that unwritten pages are exactly the zero ones.
    if (config.fill !== 'zero') for (const s of memory.allSlabs()) kernelsOf(s).raw.bitmapFill(s.layout.dirty, s.pageCount);
    const shape = workloadShape(config);
    const guest = new SimulatedGuest(memory, {
      shape, fill: config.fill, seed: config.seed, stepsPerSecond: config.stepsPerSecond, counters: initialCounters(config),
    });
    guest.startVcpu();
    return guest;
  }

  /**
   * A destination guest: empty memory for `regions`. Its vCPU thread starts now, idle, so that
   * resuming after the switchover costs a message rather than a thread start; the workload arrives
   * with the device state.
   */
  static receiving(regions: readonly Region[], options: GuestMemoryOptions = {}): SimulatedGuest {
    ramRegionsOf(regions);
    const guest = new SimulatedGuest(GuestMemory.allocate(regions, options), null);
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
    this.vcpu ??= new Vcpu(ramSlabs(this.memory), { stepsPerSecond: this.state.stepsPerSecond });
    if (!this.vcpu.isConfigured) this.vcpu.configure(this.state.shape, this.state.counters, this.gate, this.state.stepsPerSecond);
  }

  async pause(): Promise<void> {
    if (this.vcpu === null || !this.vcpu.isConfigured) return;
    const counters = await this.vcpu.pause();
    if (this.state !== null) this.state.counters = counters;
  }

  async resume(): Promise<void> {
    this.startVcpu();
    if (this.runAfterResume === null) {
      await this.vcpu!.resume();
      return;
    }
    // Paused here, so the state's counters are exact (the vCPU publishes its own count a batch late).
    this.resumeStopAt = (this.state?.counters.steps ?? this.steps) + this.runAfterResume;
    this.runAfterResume = null;
    await this.vcpu!.resumeUntil(this.resumeStopAt);
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

  /** Checks device state against the whole RAM (all regions: the guest's pages, whatever the cut). */
  checkState(bytes: Uint8Array): void {
    const { pageSize, pageCount } = ramRegionsOf(this.memory.regions);
    decodeCpuState(bytes, { pageSize, pageCount });
  }

  loadState(bytes: Uint8Array): void {
    const { pageSize, pageCount } = ramRegionsOf(this.memory.regions);
    const state = decodeCpuState(bytes, { pageSize, pageCount });
    if (this.vcpu?.isConfigured) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'device state loaded into a guest that already runs');
    this.state = state;
    this.contentArrived = true;
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

  /** Stops the vCPU thread. The memory stays readable. */
  async close(): Promise<void> {
    const v = this.vcpu;
    if (v !== null) {
      if (this.state !== null && v.isConfigured && !v.running) this.state.counters = v.counters();
      await v.exit();
    }
  }
}

/**
 * Runs the guest defined by `config` for exactly `steps` steps on this thread (the reference run). The
 * memory has the guest's regions (`config.ramRegions`); its pages hold the same bytes whatever the cut.
 */
export function replay(config: GuestConfig, steps: number, options: GuestMemoryOptions = {}): GuestMemory {
  if (!Number.isSafeInteger(steps) || steps < 0) throw invalidArgument('steps', 'must be a non-negative integer', steps);
  const memory = GuestMemory.allocate(ramRegions(config), { arenaBytes: 1 << 16, ...options });
  fillGuest(memory, config);
  const runner = new StepRunner(workloadShape(config), ramSlabs(memory), initialCounters(config));
  const batch = 1 << 20;
  for (let done = 0; done < steps; done += batch) runner.run(Math.min(batch, steps - done));
  return memory;
}
