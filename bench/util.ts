// Shared helpers for the benchmarks: medians, tables and the tinybench glue. Every figure is reported
// next to a baseline measured in the same run on the same machine (these machines are noisy).

import { Bench, type Task } from 'tinybench';
import type { Report } from '../src/index.js';

/** CPU-seconds both processes of a migration spent on it (each report's `cpuMs`, all threads). */
export function cpuSeconds(m: { source: Report; dest: Report }): number {
  return (m.source.cpuMs!.user + m.source.cpuMs!.system + m.dest.cpuMs!.user + m.dest.cpuMs!.system) / 1000;
}

/** GB on the wire per CPU-second of both processes: the cost per byte moved. */
export function gbPerCpuSecond(m: { source: Report; dest: Report }): number {
  return m.source.bytesTransferred / 1e9 / (cpuSeconds(m) || 1e-3);
}

export interface Row {
  name: string;
  [column: string]: string | number;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function printTable(title: string, rows: readonly Row[]): void {
  console.log(`\n${title}`);
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0]);
  const cell = (v: string | number): string => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : v);
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c] ?? '').length)));
  const line = (values: string[]): string => `| ${values.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join(' | ')} |`;
  console.log(line(columns));
  console.log(`|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  for (const r of rows) console.log(line(columns.map((c) => cell(r[c] ?? ''))));
}

/** Median latency (ms) of a completed tinybench task. */
export function p50(task: Task): number {
  const r = task.result;
  if (r.state !== 'completed') throw new Error(`benchmark ${task.name} ${r.state}`);
  return r.latency.p50;
}

/** Runs `fns` under tinybench for ~`timeMs` each and returns each one's median latency in ms. */
export async function measure(fns: Record<string, () => void>, timeMs = 300): Promise<Record<string, number>> {
  const bench = new Bench({ time: timeMs, warmupTime: 50 });
  for (const [name, fn] of Object.entries(fns)) bench.add(name, fn);
  await bench.run();
  const out: Record<string, number> = {};
  for (const t of bench.tasks) out[t.name] = p50(t);
  return out;
}

export const gbps = (bytes: number, ms: number): number => bytes / ms / 1e6;
