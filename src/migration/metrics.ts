// Per-iteration measurements and the bandwidth window convergence decides on. Bandwidth is bytes
// written over the most recent samples spanning at least 100 ms, so a 5 ms iteration on a quiet guest
// does not swing the estimate; the dirty rate is pages dirtied during an iteration over its duration.


import { emptyEncodingCounts, type EncodingCounts } from '../protocol/encodings/index.js';

export interface IterationRecord {
  iteration: number;
  /** Pages sent in this iteration (the snapshot it started with). */
  pages: number;
  bytes: number;
  ms: number;
  /** Bytes per second over the measurement window ending with this iteration. */
  bandwidthBytesPerSec: number;
  /** Pages dirtied while this iteration ran (sent in the next one). */
  dirtyPages: number;
  /** Pages dirtied per second while this iteration ran. */
  dirtyPagesPerSec: number;
  /** Remaining bytes / bandwidth, as estimated after this iteration. */
  expectedDowntimeMs: number;
  throttlePercent: number;
  pagesByEncoding: EncodingCounts;
  /** When this record was made (the estimate's instant), in ms since the migration started. */
  endedAtMs: number;
  /**
   * Estimate, made at the end of this pass, of the time still to go until the migration completes
   * (eta.ts); null when there is no finite estimate (no bandwidth yet, or the abort policy will fire).
   */
  etaMs: number | null;
  /** Guest steps per second over this pass (0 while paused); null when the guest does not expose steps. */
  guestStepsPerSec: number | null;
  /**
   * Whether raw pages went through LZ4 at the end of this pass, and why (compression.ts; `--compress
   * auto` decides per pass); whether pages sent before went as XBZRLE deltas, and why (`--xbzrle auto`).
   * (Reports of builds before the XBZRLE decision have no `xbzrle` and `xbzrleReason`.)
   */
  compression: { lz4: boolean; reason: string; xbzrle?: boolean; xbzrleReason?: string };
  /**
   * Disks that move (capability BLOCKS): the blocks this pass sent beside its pages, their bytes on the
   * wire and the time they took, and the blocks dirty at the sync after it (sent in the next pass,
   * counted in `expectedDowntimeMs`). Absent without disks.
   */
  blocks?: { sent: number; bytes: number; ms: number; dirty: number };
}

export type { EncodingCounts };

export function emptyCounts(): EncodingCounts {
  return emptyEncodingCounts();
}

export function addCounts(a: EncodingCounts, b: EncodingCounts): EncodingCounts {
  return { zero: a.zero + b.zero, raw: a.raw + b.raw, xbzrle: a.xbzrle + b.xbzrle, lz4: a.lz4 + b.lz4 };
}

export const BANDWIDTH_WINDOW_MS = 100;

export class BandwidthMeter {
  private readonly samples: { bytes: number; ms: number }[] = [];

  add(bytes: number, ms: number): void {
    if (ms <= 0) return;
    this.samples.push({ bytes, ms });
    // Keep only what the window needs.
    let span = 0;
    for (let i = this.samples.length - 1; i >= 0; i--) {
      span += this.samples[i].ms;
      if (span >= BANDWIDTH_WINDOW_MS && i > 0) {
        this.samples.splice(0, i);
        break;
      }
    }
  }

  /** Bytes per second over the newest samples covering ≥ 100 ms (or all there are); 0 before any. */
  rate(): number {
    let bytes = 0;
    let ms = 0;
    for (let i = this.samples.length - 1; i >= 0 && ms < BANDWIDTH_WINDOW_MS; i--) {
      bytes += this.samples[i].bytes;
      ms += this.samples[i].ms;
    }
    return ms > 0 ? (bytes * 1000) / ms : 0;
  }
}
