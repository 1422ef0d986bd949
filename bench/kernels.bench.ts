// WASM kernels against Uint8Array.set over the same bytes, measured in the same run. Throughput in
// GB/s (median latency of many runs), bitmap operations in µs per call over a 1 GiB guest's bitmap
// (262 144 pages = 4096 words), and the simulated guest's step rate.

import { Kernels, type KernelVariant } from '../src/wasm/kernels.js';
import { GuestMemory } from '../src/memory/guest-memory.js';
import { ramRegions, resolveGuestConfig } from '../src/sim/index.js';
// The step loop itself, without the vCPU thread around it: internal to the sim, measured here.
import { StepRunner, initialCounters, workloadShape } from '../src/sim/workload.js';
import { fillGuest, ramSlabs } from '../src/sim/simulated-guest.js';
import { gbps, measure, median, printTable, type Row } from './util.js';

const PAGE = 4096;
const PAGES = 16384; // 64 MiB per call: past the caches, as a pass over guest memory is
const BYTES = PAGE * PAGES;
const GUEST_PAGES = 262144;
const WORDS = GUEST_PAGES / 64;

function layout() {
  // [reserved 64K][src 4M][dst 4M][prev 4M][out 4M + slack][bitmaps]
  const src = 65536;
  const dst = src + BYTES;
  const prev = dst + BYTES;
  const out = prev + BYTES;
  const dirty = out + BYTES + 65536;
  const snapshot = dirty + WORDS * 8;
  const end = snapshot + WORDS * 8;
  const pages = Math.ceil(end / 65536) + 1;
  return { src, dst, prev, out, dirty, snapshot, pages };
}

function fillRandom(u8: Uint8Array, from: number, len: number, seed: number): void {
  let x = seed >>> 0 || 1;
  for (let i = from; i < from + len; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    u8[i] = x; u8[i + 1] = x >>> 8; u8[i + 2] = x >>> 16; u8[i + 3] = x >>> 24;
  }
}

/** Changes `fraction` of each page's bytes at scattered positions (delta density). */
function scatter(u8: Uint8Array, from: number, fraction: number, seed: number): void {
  let x = seed;
  const per = Math.max(1, Math.round(PAGE * fraction));
  for (let p = 0; p < PAGES; p++) {
    for (let k = 0; k < per; k++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      const at = from + p * PAGE + (x % PAGE);
      u8[at] = u8[at] ^ 0x5a;
    }
  }
}

export async function benchKernels(runs: number): Promise<void> {
  const rows: Row[] = [];
  const bitRows: Row[] = [];
  for (const variant of ['simd', 'scalar'] as KernelVariant[]) {
    const L = layout();
    const memory = new WebAssembly.Memory({ initial: L.pages, maximum: L.pages, shared: true });
    const k = new Kernels(memory, variant);
    const raw = k.raw;
    const u8 = new Uint8Array(memory.buffer);
    const plain = { a: new Uint8Array(BYTES), b: new Uint8Array(BYTES) };
    fillRandom(u8, L.src, BYTES, 7);
    u8.copyWithin(L.prev, L.src, L.src + BYTES);
    plain.a.set(u8.subarray(L.src, L.src + BYTES));
    // Zero pages that were written once (real memory), not never-touched ones that all map the host's
    // single zero page and read at cache speed.
    u8.fill(1, L.out, L.out + BYTES);
    u8.fill(0, L.out, L.out + BYTES);
    const results: Record<string, number[]> = {};
    const add = (r: Record<string, number>): void => { for (const [n, v] of Object.entries(r)) (results[n] ??= []).push(v); };
    for (let run = 0; run < runs; run++) {
      // Baselines: a JS copy of the same bytes, plain and shared memory.
      add(await measure({
        'Uint8Array.set (baseline)': () => plain.b.set(plain.a),
        'Uint8Array.set, shared memory': () => u8.set(u8.subarray(L.src, L.src + BYTES), L.dst),
      }));
      u8.fill(0, L.out, L.out + BYTES);
      add(await measure({
        'zero test, random pages': () => { for (let p = 0; p < PAGES; p++) raw.isZeroPage(L.src + p * PAGE, PAGE); },
        'zero test, zero pages': () => { for (let p = 0; p < PAGES; p++) raw.isZeroPage(L.out + p * PAGE, PAGE); },
        'scanZeroPages, zero pages (one call)': () => raw.scanZeroPages(L.out, PAGE, PAGES, L.snapshot),
        'hash (mxh64)': () => { for (let p = 0; p < PAGES; p++) raw.hashPage(L.src + p * PAGE, PAGE); },
        'copy + hash': () => { for (let p = 0; p < PAGES; p++) raw.copyAndHash(L.dst + p * PAGE, L.src + p * PAGE, PAGE); },
      }));
      u8.fill(0, L.out, L.out + BYTES);
      for (const [label, fraction] of [['1 %', 0.01], ['10 %', 0.1], ['50 %', 0.5]] as const) {
        u8.copyWithin(L.dst, L.prev, L.prev + BYTES);
        scatter(u8, L.dst, fraction, 99);
        let deltaBytes = 0;
        for (let p = 0; p < PAGES; p++) deltaBytes += Math.max(0, raw.xorDeltaEncode(L.prev + p * PAGE, L.dst + p * PAGE, PAGE, L.out + p * PAGE, PAGE));
        add(await measure({
          [`delta encode, ${label} changed`]: () => {
            for (let p = 0; p < PAGES; p++) raw.xorDeltaEncode(L.prev + p * PAGE, L.dst + p * PAGE, PAGE, L.out + p * PAGE, PAGE);
          },
        }));
        if (fraction === 0.01) {
          const sizes: number[] = [];
          for (let p = 0; p < PAGES; p++) sizes.push(raw.xorDeltaEncode(L.prev + p * PAGE, L.dst + p * PAGE, PAGE, L.out + p * PAGE, PAGE));
          add(await measure({
            'delta decode, 1 % changed': () => { for (let p = 0; p < PAGES; p++) raw.xorDeltaDecode(L.out + p * PAGE, sizes[p], L.prev + p * PAGE, PAGE); },
          }));
        }
        void deltaBytes;
      }
      // Bitmaps over a 1 GiB guest: sparse (1 %) dirty bits.
      u8.fill(0, L.dirty, L.snapshot + WORDS * 8);
      const setSparse = (): void => { for (let b = 0; b < GUEST_PAGES; b += 100) raw.bitmapSet(L.dirty, b); };
      setSparse();
      add(await measure({
        'bitmap count': () => raw.bitmapCount(L.dirty, WORDS),
        'bitmap next-set walk (1 % set)': () => { for (let b = raw.bitmapNextSet(L.dirty, GUEST_PAGES, 0); b >= 0; b = raw.bitmapNextSet(L.dirty, GUEST_PAGES, b + 1)); },
        'bitmap sync-and-clear (1 % set)': () => { raw.bitmapSyncAndClear(L.dirty, L.snapshot, WORDS); setSparse(); },
        'bitmap set x2622 (re-dirty for the line above)': () => setSparse(),
        'bitmap sync-and-clear (clean)': () => raw.bitmapSyncAndClear(L.dirty + 0, L.snapshot, WORDS),
      }));
    }
    const base = median(results['Uint8Array.set (baseline)']);
    const rate = (name: string): number => gbps(BYTES, median(results[name]));
    const baseRate = gbps(BYTES, base);
    for (const name of ['Uint8Array.set (baseline)', 'Uint8Array.set, shared memory', 'zero test, random pages', 'zero test, zero pages',
      'scanZeroPages, zero pages (one call)', 'hash (mxh64)', 'copy + hash', 'delta encode, 1 % changed', 'delta encode, 10 % changed',
      'delta encode, 50 % changed', 'delta decode, 1 % changed']) {
      rows.push({ name: `${name} [${variant}]`, 'GB/s': rate(name), 'x memcpy': rate(name) / baseRate });
    }
    const syncSparse = median(results['bitmap sync-and-clear (1 % set)']) - median(results['bitmap set x2622 (re-dirty for the line above)']);
    bitRows.push({ name: `bitmap count [${variant}]`, 'µs per call': median(results['bitmap count']) * 1000 });
    bitRows.push({ name: `bitmap next-set walk, 2622 bits [${variant}]`, 'µs per call': median(results['bitmap next-set walk (1 % set)']) * 1000 });
    bitRows.push({ name: `bitmap sync-and-clear, 1 % set [${variant}]`, 'µs per call': Math.max(0, syncSparse) * 1000 });
    bitRows.push({ name: `bitmap sync-and-clear, clean [${variant}]`, 'µs per call': median(results['bitmap sync-and-clear (clean)']) * 1000 });
  }
  printTable(`Kernels over ${PAGES} pages of ${PAGE} B (64 MiB) per call (median of ${runs} runs; baseline Uint8Array.set of the same bytes)`, rows);
  printTable('Bitmaps of a 1 GiB guest (262 144 pages, 4096 words)', bitRows);
  await benchSteps(runs);
}

async function benchSteps(runs: number): Promise<void> {
  const rows: Row[] = [];
  for (const workload of ['hotset', 'uniform'] as const) {
    const config = resolveGuestConfig({ memoryBytes: 2 ** 30, seed: 1, workload, fill: 'zero' });
    const memory = GuestMemory.allocate(ramRegions(config), { arenaBytes: 1 << 16 });
    fillGuest(memory, config);
    const runner = new StepRunner(workloadShape(config), ramSlabs(memory), initialCounters(config));
    runner.run(2_000_000); // touch the pages the workload uses
    const rates: number[] = [];
    for (let r = 0; r < runs; r++) {
      const t = performance.now();
      runner.run(2_000_000);
      rates.push(2_000_000 / ((performance.now() - t) / 1000));
    }
    rows.push({ name: `guest steps, ${workload}, 1 GiB, max rate`, 'M steps/s': median(rates) / 1e6 });
  }
  printTable(`Simulated guest (median of ${runs} runs of 2 M steps)`, rows);
}
