// The live progress line. On a terminal one line is redrawn in place; otherwise (CI logs, pipes) a
// plain line is printed at most once a second and whenever the phase changes.

import type { Progress } from '../index.js';

const n = (v: number): string => Math.round(v).toLocaleString('en-US');
const gbs = (bytesPerSecond: number): string => `${(bytesPerSecond / 1e9).toFixed(2)} GB/s`;
const ms = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : '∞');

export function formatProgress(p: Progress): string {
  const parts = [`[${p.role}] ${p.phase.padEnd(14)}`, `iter ${p.iteration}`];
  if (p.role === 'source') {
    parts.push(`remaining ${n(p.remainingPages)} pages`, `dirty ${n(p.dirtyPagesPerSec)} pg/s`, `bw ${gbs(p.bandwidthBytesPerSec)}`, `exp. downtime ${ms(p.expectedDowntimeMs)}`);
    if (p.throttlePercent > 0) parts.push(`throttle ${p.throttlePercent}%`);
    // From the end of pass 1: counted down from the latest estimate; ∞ when none is finite.
    if (p.etaMs !== undefined) parts.push(`eta ${p.etaMs === null ? '∞' : `${(p.etaMs / 1000).toFixed(1)} s`}`);
  } else {
    parts.push(`received ${n(p.pagesReceived ?? 0)} pages`, `bw ${gbs(p.bandwidthBytesPerSec)}`);
  }
  if (p.faults !== undefined) parts.push(`faults ${n(p.faults)}`);
  if (p.pagesPushed !== undefined) parts.push(`pushed ${n(p.pagesPushed)}`);
  if (p.pagesRequested !== undefined) parts.push(`requested ${n(p.pagesRequested)}`);
  parts.push(`${(p.bytesTransferred / 1e9).toFixed(2)} GB`, `${(p.elapsedMs / 1000).toFixed(1)} s`);
  return parts.join('  ');
}

export interface ProgressPrinter {
  update(p: Progress): void;
  done(): void;
}

export function progressPrinter(stream: NodeJS.WriteStream = process.stderr): ProgressPrinter {
  const tty = stream.isTTY === true;
  let lastPhase = '';
  let lastPrint = 0;
  let drawn = false;
  return {
    update(p) {
      const line = formatProgress(p);
      if (tty) {
        stream.write(`\r\x1b[2K${line.slice(0, (stream.columns ?? 200) - 1)}`);
        drawn = true;
        return;
      }
      const now = Date.now();
      if (p.phase !== lastPhase || now - lastPrint >= 1000) {
        stream.write(`${line}\n`);
        lastPhase = p.phase;
        lastPrint = now;
      }
    },
    done() {
      if (tty && drawn) stream.write('\n');
      drawn = false;
    },
  };
}
