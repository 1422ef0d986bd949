// Where the post-copy background push goes next. After Hines & Gopalan's pivot: pages near the last
// fault are likely the next to be touched, so the push jumps to the fault and grows outwards from it,
// alternating forward and backward windows; with CRIU's adaptive sizes, windows start at 64 KiB so the
// first pages arrive fast and grow (×4) to 4 MiB as long as no new fault moves the pivot. With no pivot
// (or once it has grown to both ends) it sweeps linearly, wrapping around. It only proposes ranges: the
// snapshot bitmap says what is still to send, so a range already pushed costs a scan and nothing more.
//
//   fault at f:   … [f-4w, f-2w) [f-2w, f-w) [f-w, f) ▲f [f+1, f+w) [f+w, f+3w) …   (w grows each step)
//
// A fault inside the range already pushed around the pivot does not move it, and the pivot moves at
// most once per MIN_WINDOWS_PER_PIVOT windows: a guest that faults all over memory (no locality to
// exploit) must not shrink every window back to 64 KiB, which would starve the push. Nor should it
// start each pivot small: once SCATTERED_PIVOTS faults in a row land away from the previous pivot's
// neighbourhood, new pivots start at the largest window (the post-copy row of `--only postcopy`, a 1 GiB
// guest with a 64 MiB hot set, went from 1606 to 1083 ms, though its fault p99 doubled: README), and a
// fault near the pivot starts small again.
//
// One planner per region, in region pages; push-scheduler.ts owns the planners and turns windows into tasks.

/** Windows pushed before a new fault may move the pivot again. */
export const MIN_WINDOWS_PER_PIVOT = 4;
/** Faults in a row far from the previous pivot after which new pivots start at the largest window. */
export const SCATTERED_PIVOTS = 2;

export interface PushWindow {
  /** Region pages [from, to). */
  from: number;
  to: number;
}

export class PushPlanner {
  private pivot: { lo: number; hi: number } | null = null;
  private forward = true;
  private size: number;
  private sweep = 0;
  private windowsSincePivot = MIN_WINDOWS_PER_PIVOT;
  /** Pivot moves in a row whose fault landed outside the previous pivot's neighbourhood. */
  private farInARow = 0;

  constructor(
    private readonly pageCount: number,
    readonly minPages = 16,
    readonly maxPages = 1024,
  ) {
    this.size = minPages;
  }

  /** Pages the next window may hold. */
  get windowPages(): number {
    return this.size;
  }

  /**
   * A fault at `page` (served on the urgent channel): move the pivot there and start small again, or
   * large when the faults have shown no locality (SCATTERED_PIVOTS).
   */
  onFault(page: number): void {
    if (page < 0 || page >= this.pageCount) return;
    if (this.pivot !== null && page >= this.pivot.lo && page < this.pivot.hi) return;
    if (this.windowsSincePivot < MIN_WINDOWS_PER_PIVOT) return;
    if (this.pivot !== null) {
      // Near: within one window of what was pushed around the old pivot.
      const near = page >= this.pivot.lo - this.size && page < this.pivot.hi + this.size;
      this.farInARow = near ? 0 : this.farInARow + 1;
    }
    this.pivot = { lo: page, hi: page + 1 };
    this.forward = true;
    this.size = this.farInARow >= SCATTERED_PIVOTS ? this.maxPages : this.minPages;
    this.windowsSincePivot = 0;
  }

  /** The next window together with the pages it may hold (windowPages before the window was taken). */
  nextWindow(): PushWindow & { pages: number } {
    const pages = this.size;
    return { ...this.next(), pages };
  }

  next(): PushWindow {
    const w = this.pivot !== null ? this.aroundPivot() : null;
    const window = w ?? this.linear();
    this.size = Math.min(this.maxPages, this.size * 4);
    this.windowsSincePivot++;
    return window;
  }

  private aroundPivot(): PushWindow | null {
    const p = this.pivot!;
    const canForward = p.hi < this.pageCount;
    const canBackward = p.lo > 0;
    if (!canForward && !canBackward) {
      this.pivot = null;
      return null;
    }
    const goForward = canForward && (this.forward || !canBackward);
    this.forward = !goForward;
    if (goForward) {
      const to = Math.min(this.pageCount, p.hi + this.size);
      const w = { from: p.hi, to };
      p.hi = to;
      return w;
    }
    const from = Math.max(0, p.lo - this.size);
    const w = { from, to: p.lo };
    p.lo = from;
    return w;
  }

  private linear(): PushWindow {
    if (this.sweep >= this.pageCount) this.sweep = 0;
    const from = this.sweep;
    const to = Math.min(this.pageCount, from + this.size);
    this.sweep = to;
    return { from, to };
  }
}
