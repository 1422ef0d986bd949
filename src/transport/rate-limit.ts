// A token bucket over bytes: caps a migration's bandwidth so it leaves room for the guest's own
// traffic (QEMU's max-bandwidth). Tokens accrue at `bytesPerSecond` up to a burst of BURST_MS worth;
// `take(n)` resolves when n bytes may go. n may exceed the burst: the debt is waited out.

export const BURST_MS = 20;

export class RateLimiter {
  private tokens: number;
  private last = performance.now();

  constructor(readonly bytesPerSecond: number) {
    this.tokens = (bytesPerSecond * BURST_MS) / 1000;
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min((this.bytesPerSecond * BURST_MS) / 1000, this.tokens + ((now - this.last) * this.bytesPerSecond) / 1000);
    this.last = now;
  }

  /** Resolves once `bytes` may be sent (at once when the bucket holds them). */
  take(bytes: number): Promise<void> | null {
    this.refill();
    this.tokens -= bytes;
    if (this.tokens >= 0) return null;
    const waitMs = (-this.tokens * 1000) / this.bytesPerSecond;
    return new Promise((resolve) => setTimeout(resolve, waitMs));
  }
}
