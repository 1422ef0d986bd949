// The simulated guest's vCPU thread. Runs workload steps in batches between which it reads its
// control block (vcpu-control.ts): commands, throttle and rate. Pauses only at step boundaries, and
// publishes its exact counters before acknowledging a pause, so the state saved on one host resumes
// on another exactly where it stopped.
//
// Throttle (auto-converge) is a duty cycle over 10 ms periods: run for (100 - p) % of each period and
// sleep the rest. A rate limit is a token bucket in steps per second. Sleeps are Atomics.wait on the
// command sequence, so a command interrupts them.
//
// The thread can be started before it knows its workload (a destination starts it at the handshake so
// that resuming costs a message, not a thread start): the workload shape and the post-copy gate arrive
// on `config` and are read synchronously at the first RUN.

import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { Command, Ctl, VcpuStatus, controlViews } from './vcpu-control.js';
import { StepRunner, type CpuCounters, type WorkloadShape } from './workload.js';
import type { Slab } from '../memory/slab.js';
import { createPageGate, type PageGateInit } from '../memory/page-gate.js';
import type { PrngState } from './prng.js';
import type { DiskHandle } from './disk.js';
import { OutputWriter } from './output-ring.js';

export interface VcpuWorkerData {
  control: SharedArrayBuffer;
  slabs: Slab[];
  /** Carries one VcpuConfig before the first RUN. */
  config: MessagePort;
}

export interface VcpuConfig {
  shape: WorkloadShape;
  counters: CpuCounters;
  gate: PageGateInit | null;
  disks: DiskHandle[];
  /** The output ring (output-ring.ts) when the host takes the guest's outputs. */
  outputs: SharedArrayBuffer | null;
}

const PERIOD_MS = 10;
const TARGET_BATCH_MS = 0.5;

/** The thread's loop: returns when the controller sends EXIT. */
export function runVcpu(data: VcpuWorkerData): void {
  const { i32, f64 } = controlViews(data.control);
  let runner = null as StepRunner | null; // (cast: assigned in configured(), so no narrowing to null)
  const configured = (): StepRunner => {
    if (runner !== null) return runner;
    const message = receiveMessageOnPort(data.config);
    if (message === undefined) throw new Error('vCPU started without a workload');
    const config = message.message as VcpuConfig;
    runner = new StepRunner(config.shape, data.slabs, config.counters);
    if (config.gate !== null) runner.gate = createPageGate(config.gate, data.slabs, config.disks.map((d) => d.presentBuffer));
    runner.attachDisks(config.disks);
    if (config.outputs !== null) runner.outputs = new OutputWriter(config.outputs);
    data.config.close();
    return runner;
  };
  let seq = 0;
  let running = false;
  let batch = 4096;
  let periodStart = performance.now();
  let ranInPeriod = 0;
  let tokens = 0;
  let lastRefill = performance.now();

  // Every pause makes the disk writes before it durable: the host that runs the guest next may be
  // another one, reading the same images.
  const publish = (): void => {
    if (runner === null) return;
    runner.flushDisks();
    for (let i = 0; i < 4; i++) i32[Ctl.PRNG + i] = runner.prng[i];
    f64[Ctl.F64_STEPS] = runner.steps;
  };
  const setStatus = (status: number): void => {
    Atomics.store(i32, Ctl.STATUS, status);
    Atomics.notify(i32, Ctl.STATUS);
  };
  const sleep = (ms: number): void => {
    Atomics.wait(i32, Ctl.CMD_SEQ, seq, Math.max(0.05, ms));
  };

  publish();
  for (;;) {
    const cmdSeq = Atomics.load(i32, Ctl.CMD_SEQ);
    if (cmdSeq !== seq) {
      seq = cmdSeq;
      const cmd = Atomics.load(i32, Ctl.CMD);
      if (cmd === Command.RUN && !running) {
        // Resuming from a pause: the controller may have loaded new counters meanwhile. (A RUN sent to
        // a running vCPU must not reload them: the block holds the counters of the last pause.)
        const runner = configured();
        runner.prng = [i32[Ctl.PRNG], i32[Ctl.PRNG + 1], i32[Ctl.PRNG + 2], i32[Ctl.PRNG + 3]] as PrngState;
        runner.steps = f64[Ctl.F64_STEPS];
        running = true;
        tokens = 0;
        lastRefill = periodStart = performance.now();
        ranInPeriod = 0;
        setStatus(VcpuStatus.RUNNING);
      } else if (cmd === Command.PAUSE || cmd === Command.EXIT) {
        running = false;
        publish();
        setStatus(cmd === Command.EXIT ? VcpuStatus.EXITED : VcpuStatus.PAUSED);
      }
      Atomics.store(i32, Ctl.ACK_SEQ, seq);
      Atomics.notify(i32, Ctl.ACK_SEQ);
      if (cmd === Command.EXIT) return;
      continue;
    }
    const stopAt = f64[Ctl.F64_STOP_AT];
    if (runner === null) {
      sleep(1000);
      continue;
    }
    if (running && runner.steps >= stopAt) {
      running = false;
      publish();
      setStatus(VcpuStatus.PAUSED);
    }
    if (running && runner.shape.kind === 'idle' && Number.isFinite(stopAt)) {
      // Idle steps change nothing: reach the stop point at once instead of spinning.
      runner.run(stopAt - runner.steps);
      continue;
    }
    if (!running || runner.shape.kind === 'idle') {
      sleep(1000);
      continue;
    }
    if (runner.outputs?.full === true) {
      // The host has not taken the last outputs yet: wait for it as a guest waits on a full queue.
      sleep(1);
      continue;
    }
    const now = performance.now();
    const throttle = Atomics.load(i32, Ctl.THROTTLE);
    if (now - periodStart >= PERIOD_MS) {
      periodStart = now;
      ranInPeriod = 0;
    }
    if (throttle > 0 && ranInPeriod >= ((100 - throttle) / 100) * PERIOD_MS) {
      sleep(periodStart + PERIOD_MS - now);
      continue;
    }
    let n = batch;
    const rate = Atomics.load(i32, Ctl.RATE);
    if (rate > 0) {
      // A throttled vCPU earns steps only for the share of time it may run, so tokens must not pile
      // up during the throttle's sleeps and come out as a burst afterwards.
      const effective = (rate * (100 - throttle)) / 100;
      tokens = Math.min(effective * 0.05 + 1, tokens + ((now - lastRefill) * effective) / 1000);
      lastRefill = now;
      if (tokens < 1) {
        sleep(Math.min(PERIOD_MS, ((1 - tokens) * 1000) / Math.max(1, effective)));
        continue;
      }
      n = Math.min(n, Math.floor(tokens));
    }
    n = Math.min(n, stopAt - runner.steps);
    const t0 = performance.now();
    const ran = runner.run(n);
    const dt = performance.now() - t0;
    tokens -= ran;
    ranInPeriod += dt;
    f64[Ctl.F64_STEPS] = runner.steps;
    if (ran === batch) batch = Math.max(256, Math.min(1 << 20, Math.round(batch * Math.min(2, Math.max(0.5, dt > 0 ? TARGET_BATCH_MS / dt : 2)))));
  }
}

