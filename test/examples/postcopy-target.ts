// Example: a destination that can receive post-copy migrations. In post-copy the guest resumes on the
// destination before its pages have arrived; memshift clears the `present` bit of every page still on
// the source, and the target's vCPU must check that bit before each access and wait for missing pages.
// The contract has two halves: `enablePageGate()` returns `createPageGateInit()` (called once, before
// the first resume), and the vCPU thread wraps the same buffers with `createPageGate(init, slabs)`
// (postcopy-vcpu.ts). A target without enablePageGate is refused post-copy at the handshake.
//
//   node dist/test/examples/postcopy-target.js
//
// main() migrates an 8 MiB ExampleGuest (custom-source.ts) in mode 'postcopy', with the bulk link capped
// at 16 MiB/s so that the resumed vCPU reaches pages before the push does, and checks what it read.

import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import {
  GuestMemory, Mailbox, createPageGateInit, listen, migrate, readFaultLog, receive,
  type MemoryTarget, type PageGateInit, type Region, type Report, type Slab,
} from '../../src/index.js';
import { ExampleGuest, decodeVcpuState, type VcpuState } from './custom-source.js';
import { stampOf, type VcpuData, type VcpuResult, type VcpuStart } from './postcopy-vcpu.js';

export class PostcopyTarget implements MemoryTarget {
  readonly memory: GuestMemory;
  /** Freshly allocated slabs are zero, so pages the source never wrote need not be sent. */
  readonly unwrittenPagesAreZero = true;
  /** Resolves with what the vCPU read once it has touched every page. */
  readonly finished: Promise<VcpuResult>;
  private readonly vcpu: Worker;
  private gate: PageGateInit | null = null;
  private state: VcpuState | null = null;
  private started = false;

  constructor(regions: readonly Region[]) {
    if (regions.length !== 1 || regions[0].kind !== 'ram') throw new Error('expected one RAM region');
    this.memory = GuestMemory.allocate(regions);
    // Started now, idle until resume(): starting a thread (~40 ms) at resume would add to the downtime.
    const data: VcpuData = { regions: [...regions], slabs: [...this.memory.slabsOf(regions[0].id)] };
    this.vcpu = new Worker(new URL('./postcopy-vcpu.js', import.meta.url), { workerData: data });
    this.vcpu.unref();
    this.finished = new Promise<VcpuResult>((resolve, reject) => {
      this.vcpu.once('message', resolve);
      this.vcpu.once('error', reject);
      this.vcpu.once('exit', (code) => reject(new Error(`vCPU thread exited (${code}) before it finished`)));
    });
    this.finished.catch(() => undefined); // a guest never resumed never finishes; whoever awaits it still sees why
  }

  get regions(): readonly Region[] {
    return this.memory.regions;
  }

  slabsOf(regionId: number): readonly Slab[] {
    return this.memory.slabsOf(regionId);
  }

  checkState(bytes: Uint8Array): void {
    decodeVcpuState(bytes, this.memory.regions[0].pageCount);
  }

  loadState(bytes: Uint8Array): void {
    this.state = decodeVcpuState(bytes, this.memory.regions[0].pageCount);
  }

  /** Post-copy only, before the first resume: the buffers the vCPU and memshift's fault thread share. */
  enablePageGate(): PageGateInit {
    if (this.started) throw new Error('post-copy must be armed before the guest first runs');
    this.gate = createPageGateInit();
    return this.gate;
  }

  /** Starts the vCPU; with a gate it blocks on every page that has not arrived yet. */
  async resume(): Promise<void> {
    if (this.state === null) throw new Error('no device state loaded');
    if (this.started) return;
    this.started = true;
    this.vcpu.ref();
    const start: VcpuStart = { gate: this.gate, seed: this.state.prng };
    this.vcpu.postMessage(start);
  }

  /** Faults the vCPU took: the mailbox's FAULTS counter. */
  get faults(): number {
    return this.gate === null ? 0 : Atomics.load(new Int32Array(this.gate.mailbox), Mailbox.FAULTS);
  }

  /** How long each fault blocked the vCPU, in µs (the gate's fault log). */
  faultLatenciesUs(): number[] {
    return this.gate === null ? [] : readFaultLog(this.gate.faultLog);
  }

  async close(): Promise<void> {
    await this.vcpu.terminate();
  }
}

export interface PostcopyResult {
  report: Report;
  destinationReport: Report;
  /** Faults counted by the target's own mailbox, and their blocked times (µs). */
  faults: number;
  faultLatenciesUs: number[];
  pages: number;
  /** Pages whose content, as the vCPU first read it, equals the source's at the switchover. */
  pagesReadAsOnSource: number;
  /** Pages that still hold the vCPU's stamp (no later copy overwrote its write) and otherwise the source's bytes. */
  pagesKeptWrite: number;
}

const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

export async function main(options: { log?: (line: string) => void } = {}): Promise<PostcopyResult> {
  const log = options.log ?? ((): void => undefined);
  const source = ExampleGuest.create({ pages: 2048, seed: 5, writesPerTick: 16 });
  await source.resume();
  await new Promise((r) => setTimeout(r, 20));
  const { server, address } = await listen('127.0.0.1:0');
  let target: PostcopyTarget | null = null;
  const destination = receive({
    listen: server,
    security: 'insecure', // plaintext, spelled out; see custom-source.ts for a pre-shared key
    createTarget: (regions) => (target = new PostcopyTarget(regions)),
  });
  try {
    const report = await migrate(source, address, {
      security: 'insecure',
      mode: 'postcopy',
      maxBandwidth: 16 * 2 ** 20,
      // Post-copy samples carry pagesPushed and pagesRequested (absent in other phases).
      onProgress: (p) => log(`${p.role} ${p.phase}${p.pagesPushed === undefined ? '' : `: ${p.pagesPushed} pages pushed, ${p.pagesRequested} requested by faults`}`),
    });
    const { report: destinationReport } = await destination;
    const t = target as PostcopyTarget | null;
    if (t === null) throw new Error('no target was created');
    const read = await t.finished;
    // The source guest paused at the switchover and was released: its memory is the switchover's.
    const pages = source.memory.regions[0].pageCount;
    let pagesReadAsOnSource = 0;
    let pagesKeptWrite = 0;
    for (let page = 0; page < pages; page++) {
      const src = source.memory.pageView(0, page);
      const dst = t.memory.pageView(0, page);
      if (sha256(src).equals(read.pageSha256[page])) pagesReadAsOnSource++;
      const last = dst.byteLength - 4;
      const stamp = new DataView(dst.buffer, dst.byteOffset + last, 4).getUint32(0, true);
      if (stamp === stampOf(page) && Buffer.from(src.subarray(0, last)).equals(dst.subarray(0, last))) pagesKeptWrite++;
    }
    return { report, destinationReport, faults: t.faults, faultLatenciesUs: t.faultLatenciesUs(), pages, pagesReadAsOnSource, pagesKeptWrite };
  } finally {
    server.close();
    await source.close();
    await (target as PostcopyTarget | null)?.close();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await main({ log: console.log });
  const p = r.destinationReport.postcopy;
  console.log(`${r.report.outcome}: downtime ${r.report.downtimeMs?.toFixed(1)} ms, post-copy ${p?.postcopyTimeMs.toFixed(0)} ms`);
  console.log(`${r.faults} faults (p50 ${p?.faultLatencyUs.p50.toFixed(0)} µs, max ${p?.faultLatencyUs.max.toFixed(0)} µs); ${r.pagesReadAsOnSource}/${r.pages} pages read as the source held them; ${r.pagesKeptWrite}/${r.pages} kept the vCPU's write`);
}
