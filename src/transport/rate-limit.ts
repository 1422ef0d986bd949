// A token bucket over bytes: caps a migration's bandwidth so it leaves room for the guest's own
// traffic (QEMU's max-bandwidth). Tokens accrue at `bytesPerSecond` up to a burst of BURST_MS worth;
// `take(n)` resolves when n bytes may go. n may exceed the burst: the debt is waited out.
//
// Time comes from a Clock (performance.now and setTimeout by default) so that tests can drive the
// token arithmetic with a fake one; the limiter never reads the time any other way.

export const BURST_MS = 20;

/** Where the limiter reads the time (ms, monotonic) and how it waits. */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export class RateLimiter {
  private tokens: number;
  private last: number;

  constructor(readonly bytesPerSecond: number, private readonly clock: Clock = systemClock) {
    this.tokens = (bytesPerSecond * BURST_MS) / 1000;
    this.last = clock.now();
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min((this.bytesPerSecond * BURST_MS) / 1000, this.tokens + ((now - this.last) * this.bytesPerSecond) / 1000);
    this.last = now;
  }

  /** Resolves once `bytes` may be sent (at once when the bucket holds them). */
  take(bytes: number): Promise<void> | null {
    this.refill();
    this.tokens -= bytes;
    if (this.tokens >= 0) return null;
    const waitMs = (-this.tokens * 1000) / this.bytesPerSecond;
    return this.clock.sleep(waitMs);
  }
}
