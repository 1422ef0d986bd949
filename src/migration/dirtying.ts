// How many pages the guest dirties in a given time: the curve u(t) of pages dirtied t ms after a sync,
// sampled during pre-copy passes (the dirty log's bit count, between batches). Pure: the source feeds
// it samples and asks it for u(t).
//
// A rate (pages at the pass end ÷ its length) assumes u grows linearly. A guest writing over a working
// set smaller than what a pass lets it touch saturates instead: over a 380 ms first pass a 16 MiB hot
// set reads as 28k pages/s while the 20 ms passes after it see 66k pages/s, so a projection made with
// the rate shrinks faster than the passes do. The curve answers for the time asked:
//
//   pages
//     │           ●───●───●────●      u(t) sampled in the longest pass so far (at its throttle)
//     │      ●─●                      asked inside it: interpolated between samples
//     │   ●                           asked past it: its last point plus its average rate since half its length
//     │ ●
//     └──────────────────────── t (ms since the sync that started the pass)

/** Samples closer together than this (ms) are not kept. */
export const SAMPLE_SPACING_MS = 1;

interface Curve {
  /** Sample times (ms since the pass's sync) and dirty pages then, increasing in time; starts at (0, 0). */
  ms: number[];
  pages: number[];
  /** The vCPU throttle the pass ran at: a throttled guest dirties the same pages over more wall time. */
  throttlePercent: number;
}

export class DirtyingCurve {
  private current: Curve = { ms: [0], pages: [0], throttlePercent: 0 };
  private longest: Curve | null = null;

  /** A pass starts (right after the sync that cleared the dirty log) at throttle `throttlePercent`. */
  passStarting(throttlePercent: number): void {
    this.current = { ms: [0], pages: [0], throttlePercent };
  }

  /** `pages` dirty `ms` after the pass's sync. */
  sample(ms: number, pages: number): void {
    const c = this.current;
    if (!(ms >= c.ms[c.ms.length - 1] + SAMPLE_SPACING_MS) || !Number.isFinite(pages)) return;
    c.ms.push(ms);
    c.pages.push(Math.max(pages, c.pages[c.pages.length - 1]));
  }

  /** The pass ended with `pages` dirty `ms` after its sync: its curve counts if it is the longest so far. */
  passEnded(ms: number, pages: number): void {
    const c = this.current;
    if (ms > c.ms[c.ms.length - 1]) {
      c.ms.push(ms);
      c.pages.push(Math.max(pages, c.pages[c.pages.length - 1]));
    }
    if (this.longest === null || c.ms[c.ms.length - 1] >= this.longest.ms[this.longest.ms.length - 1]) this.longest = c;
    this.current = { ms: [0], pages: [0], throttlePercent: c.throttlePercent };
  }

  /**
   * Pages dirtied in `ms` after a sync at throttle `throttlePercent`, from the longest pass's curve; null
   * before any pass ended.
   */
  pagesIn(ms: number, throttlePercent: number): number | null {
    const c = this.longest;
    if (c === null || !(ms >= 0)) return null;
    // The vCPU runs (100 - p) % of the time: at another throttle the same pages take longer or less.
    const t = (ms * (100 - throttlePercent)) / (100 - c.throttlePercent);
    const last = c.ms.length - 1;
    if (t >= c.ms[last]) {
      if (last === 0) return 0;
      // Past the curve: its rate over its second half goes on.
      let h = 0;
      while (h < last && c.ms[h] < c.ms[last] / 2) h++;
      if (h === last) h = last - 1;
      const rate = (c.pages[last] - c.pages[h]) / (c.ms[last] - c.ms[h]);
      return c.pages[last] + rate * (t - c.ms[last]);
    }
    let i = 1;
    while (c.ms[i] < t) i++;
    const f = (t - c.ms[i - 1]) / (c.ms[i] - c.ms[i - 1]);
    return c.pages[i - 1] + f * (c.pages[i] - c.pages[i - 1]);
  }
}
