// How long the peer has been silent, as a replication watchdog judges it on each tick of its timer.
// A tick that comes late judges nothing: this thread was busy, and what the peer sent meanwhile waits
// unread in the socket (Node runs due timers before it reads), so a stall of our own would otherwise
// pass for the peer's silence. The next tick, after the reads, judges; a thread busy tick after tick
// is judged anyway once the silence is three times the limit.

export class SilenceClock {
  /** When the peer was last heard from (performance.now()). */
  lastHeardAt = performance.now();
  private lastTickAt = performance.now();

  constructor(private readonly tickMs: number, private readonly limitMs: number) {}

  heard(now = performance.now()): void {
    this.lastHeardAt = now;
  }

  /** On a tick: the silence in ms when it is over the limit and this tick may judge it, else null. */
  overLimit(now = performance.now()): number | null {
    const late = now - this.lastTickAt > 2 * this.tickMs;
    this.lastTickAt = now;
    const silent = now - this.lastHeardAt;
    if (silent <= this.limitMs || (late && silent <= 3 * this.limitMs)) return null;
    return silent;
  }
}
