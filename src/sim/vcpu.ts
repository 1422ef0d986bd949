// Controller of the simulated vCPU thread (vcpu-thread.ts), on the thread that owns the guest.
// Commands are serialised: each waits for the vCPU's acknowledgement, so `pause()` resolves only
// when no step is in progress and the counters it returns are exact. A thread that has never run
// does not keep the process alive (a destination guest whose migration failed must not hold it);
// from its first run it does, until it exits.

import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { ErrorCode, MemshiftError, invalidArgument } from '../errors.js';
import { CONTROL_BLOCK_BYTES, Command, Ctl, VcpuStatus, controlViews, type CommandValue, type ControlViews } from './vcpu-control.js';
import type { PageGateInit } from '../memory/page-gate.js';
import { waitForChange } from '../memory/shared-board.js';
import type { Slab } from '../memory/slab.js';
import type { CpuCounters, WorkloadShape } from './workload.js';
import type { VcpuConfig, VcpuWorkerData } from './vcpu-thread.js';
import { compileLazilyAgain } from '../import-eagerly.js';
import type { DiskHandle } from './disk.js';

export interface VcpuOptions {
  stepsPerSecond: number;
  gate?: PageGateInit | null;
}

export class Vcpu {
  private readonly worker: Worker;
  private readonly ctl: ControlViews;
  private chain: Promise<unknown> = Promise.resolve();
  private failure: MemshiftError | null = null;
  private exited = false;
  readonly control: SharedArrayBuffer;

  private readonly config: MessagePort;
  private configured = false;
  private readonly loaded: Promise<void>;

  /** Starts the thread; it runs nothing until `configure` gave it a workload and `resume` is called. */
  constructor(slabs: readonly Slab[], options: VcpuOptions) {
    this.control = new SharedArrayBuffer(CONTROL_BLOCK_BYTES);
    this.ctl = controlViews(this.control);
    this.ctl.f64[Ctl.F64_STOP_AT] = Infinity;
    Atomics.store(this.ctl.i32, Ctl.RATE, options.stepsPerSecond);
    const { port1, port2 } = new MessageChannel();
    this.config = port1;
    const data: VcpuWorkerData = { control: this.control, slabs: [...slabs], config: port2 };
    this.worker = new Worker(new URL('./vcpu-worker.js', import.meta.url), { workerData: data, transferList: [port2] });
    this.worker.unref();
    this.worker.on('error', (err) => {
      this.failure = new MemshiftError(ErrorCode.WORKER_FAILED, `vCPU thread failed: ${err.message}`, { cause: err });
    });
    // Loaded, or gone (a resume then reports why).
    this.loaded = new Promise((resolve) => {
      this.worker.once('message', () => resolve());
      this.worker.once('exit', () => resolve());
    });
    this.worker.on('exit', () => {
      this.exited = true;
      // Ended while it loaded (exit() gives up after 200 ms), the thread never set the flag back.
      compileLazilyAgain();
      // Wake anything waiting for an acknowledgement that will never come.
      Atomics.store(this.ctl.i32, Ctl.ACK_SEQ, -1);
      Atomics.notify(this.ctl.i32, Ctl.ACK_SEQ);
      Atomics.notify(this.ctl.i32, Ctl.STATUS);
    });
  }

  /**
   * Gives the thread its workload, counters, (post-copy) page gate, disks (their open files: a file
   * descriptor is the whole process's) and output ring; once, before the first resume.
   */
  configure(shape: WorkloadShape, counters: CpuCounters, gate: PageGateInit | null, stepsPerSecond: number, disks: readonly DiskHandle[] = [], outputs: SharedArrayBuffer | null = null): void {
    if (this.configured) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'vCPU already has a workload');
    this.configured = true;
    this.writeCounters(counters);
    Atomics.store(this.ctl.i32, Ctl.RATE, stepsPerSecond);
    const config: VcpuConfig = { shape, counters, gate, disks: disks.map((d) => ({ fd: d.fd, blocks: d.blocks, dirtyBuffer: d.dirtyBuffer, presentBuffer: d.presentBuffer })), outputs };
    this.config.postMessage(config);
    this.config.close();
  }

  get isConfigured(): boolean {
    return this.configured;
  }

  /** Steps executed so far (exact while paused, recent while running). */
  get steps(): number {
    return this.ctl.f64[Ctl.F64_STEPS];
  }

  get running(): boolean {
    return Atomics.load(this.ctl.i32, Ctl.STATUS) === VcpuStatus.RUNNING;
  }

  /** Exact counters; call while paused. */
  counters(): CpuCounters {
    const i = this.ctl.i32;
    return { prng: [i[Ctl.PRNG] >>> 0, i[Ctl.PRNG + 1] >>> 0, i[Ctl.PRNG + 2] >>> 0, i[Ctl.PRNG + 3] >>> 0], steps: this.ctl.f64[Ctl.F64_STEPS] };
  }

  /** Replaces the counters; call while paused (they take effect on the next resume). */
  writeCounters(c: CpuCounters): void {
    for (let k = 0; k < 4; k++) this.ctl.i32[Ctl.PRNG + k] = c.prng[k];
    this.ctl.f64[Ctl.F64_STEPS] = c.steps;
  }

  throttle(percent: number): void {
    if (!Number.isInteger(percent) || percent < 0 || percent > 99) throw invalidArgument('throttle', 'must be an integer percentage in [0, 99]', percent);
    Atomics.store(this.ctl.i32, Ctl.THROTTLE, percent);
  }

  get throttlePercent(): number {
    return Atomics.load(this.ctl.i32, Ctl.THROTTLE);
  }

  async resume(): Promise<void> {
    this.worker.ref();
    await this.command(Command.RUN);
  }

  async pause(): Promise<CpuCounters> {
    await this.command(Command.PAUSE);
    return this.counters();
  }

  /** Runs (without waiting) until exactly `steps` steps have executed in total, then pauses itself. */
  async resumeUntil(steps: number): Promise<void> {
    if (!Number.isSafeInteger(steps)) throw invalidArgument('steps', 'must be an integer', steps);
    this.ctl.f64[Ctl.F64_STOP_AT] = steps;
    this.worker.ref();
    await this.command(Command.RUN);
  }

  /** Runs until exactly `steps` steps have executed in total, then stays paused. */
  async runUntil(steps: number): Promise<CpuCounters> {
    // Pause first so the count compared against is exact, not the last published batch.
    await this.command(Command.PAUSE);
    if (!Number.isSafeInteger(steps) || steps < this.steps) throw invalidArgument('steps', `must be an integer ≥ the current count ${this.steps}`, steps);
    this.ctl.f64[Ctl.F64_STOP_AT] = steps;
    this.worker.ref();
    await this.command(Command.RUN);
    const i32 = this.ctl.i32;
    while (Atomics.load(i32, Ctl.STATUS) === VcpuStatus.RUNNING && !this.exited) await waitForChange(i32, Ctl.STATUS, VcpuStatus.RUNNING, 1000);
    this.checkAlive();
    this.ctl.f64[Ctl.F64_STOP_AT] = Infinity;
    return this.counters();
  }

  /** Resolves once the thread has loaded its code: a command to it is then answered at once. */
  ready(): Promise<void> {
    return this.loaded;
  }

  /** Waits until the thread stops by itself (at the stop point of `resumeUntil`); call only with one set. */
  async waitUntilPaused(): Promise<void> {
    const i32 = this.ctl.i32;
    while (Atomics.load(i32, Ctl.STATUS) === VcpuStatus.RUNNING && !this.exited) await waitForChange(i32, Ctl.STATUS, VcpuStatus.RUNNING, 1000);
    this.checkAlive();
  }

  async exit(): Promise<void> {
    if (this.exited) return;
    // A vCPU blocked on a post-copy fault never acknowledges: give it a moment, then end the thread.
    await Promise.race([this.command(Command.EXIT).catch(() => undefined), new Promise((r) => setTimeout(r, 200).unref())]);
    await this.worker.terminate();
  }

  private checkAlive(): void {
    if (this.failure !== null) throw this.failure;
    if (this.exited) throw new MemshiftError(ErrorCode.WORKER_FAILED, 'vCPU thread has exited');
  }

  private command(cmd: CommandValue): Promise<void> {
    const run = async (): Promise<void> => {
      this.checkAlive();
      const i32 = this.ctl.i32;
      Atomics.store(i32, Ctl.CMD, cmd);
      const seq = Atomics.add(i32, Ctl.CMD_SEQ, 1) + 1;
      Atomics.notify(i32, Ctl.CMD_SEQ);
      for (;;) {
        const ack = Atomics.load(i32, Ctl.ACK_SEQ);
        if (ack === seq) return;
        this.checkAlive();
        await waitForChange(i32, Ctl.ACK_SEQ, ack, 1000);
      }
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }
}
