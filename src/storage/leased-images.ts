// A guest's images on shared storage and the leases that say who may run it (lease.ts): the
// SharedStorage a runner gives the engine. The holder keeps every image's lease renewed while it holds
// them; if a renewal finds a lease gone (broken by an operator, expired while this host stalled, taken
// by another), it calls `onLost`, and the runner must stop its guest at once (self-fencing).
//
//   source:       take (before the images are touched) ─► renew … ─► handOver(to) at switchover
//   destination:  keep(as) from SWITCHOVER ─► accept(as) before resume ─► renew …   or   giveBack(as): hand it back, not resuming
//
// Several images are handed over one by one. A failure half-way leaves nobody holding all of them, so
// nobody runs the guest: the safe side of the rule, for the operator to settle with `memshift lease`.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { ErrorCode, MemshiftError, invalidArgument } from '../errors.js';
import type { SharedStorage } from '../memory/types.js';
import { handOverLease, holdsLease, readLease, releaseLease, renewLease, takeLease } from './lease.js';

export const DEFAULT_LEASE_TTL_MS = 10_000;

/** What the runner of the guest does for the leases. */
export interface RunnerHooks {
  /** Called (once) when a renewal finds a lease no longer held: stop the guest now. */
  onLost(error: MemshiftError): void;
  /** Makes the guest's writes to the images durable (called before a hand-over). */
  flush(): void;
}

/** A runner's name in the lease: host, process and a random tag, so that two runs never share one. */
export function runnerName(role: string): string {
  return `${role} ${hostname()} pid ${process.pid} ${randomBytes(4).toString('hex')}`;
}

export class LeasedImages implements SharedStorage {
  readonly images: readonly string[];
  readonly ttlMs: number;
  /** The name this side holds (or held) the leases under: the source's from `take`, the destination's from `accept`. */
  private name: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private hooks: RunnerHooks | null = null;
  private renewedAt = 0;

  constructor(images: readonly string[], ttlMs = DEFAULT_LEASE_TTL_MS) {
    if (images.length === 0) throw invalidArgument('images', 'must name at least one image');
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 100) throw invalidArgument('leaseTtlMs', 'must be a whole number of ms, at least 100', ttlMs);
    this.images = [...images];
    this.ttlMs = ttlMs;
  }

  /** Tells the leases who runs the guest they guard. */
  bind(hooks: RunnerHooks): void {
    this.hooks = hooks;
  }

  /** The name this side holds the leases under (null before it took or accepted them). */
  get holderName(): string | null {
    return this.name;
  }

  /**
   * Takes every image's lease for `holder` (MS_ERR_LEASE_HELD naming the runner that has one). Call
   * before the images are opened: a runner that is refused must not touch them. Gives back what it took
   * when a later image is refused.
   */
  take(holder: string): void {
    const taken: string[] = [];
    try {
      for (const image of this.images) {
        takeLease(image, holder, this.ttlMs);
        taken.push(image);
      }
    } catch (err) {
      for (const image of taken) {
        try {
          releaseLease(image, holder);
        } catch {
          // Lost meanwhile: nothing of ours to give back.
        }
      }
      throw err;
    }
    this.name = holder;
    this.startRenewing();
  }

  handOver(to: string): void {
    if (this.images.every((image) => holdsLease(image, to))) return;
    const name = this.name;
    if (name === null) throw new MemshiftError(ErrorCode.LEASE_LOST, 'this side holds no lease to hand over', { field: 'lease' });
    this.stopRenewing();
    this.hooks?.flush();
    for (const image of this.images) handOverLease(image, name, to, this.ttlMs);
  }

  /** Whether this side holds every lease now; one that came back (given back by a destination) is renewed again from here. */
  holds(): boolean {
    const name = this.name;
    let held = false;
    try {
      held = name !== null && this.images.every((image) => holdsLease(image, name));
    } catch {
      // Unreadable or damaged: not known to be ours, which is the safe answer.
    }
    if (held && this.timer === null) this.startRenewing();
    return held;
  }

  /**
   * Destination, from SWITCHOVER until it accepts or gives back: renews the leases handed to `as` every
   * third of the term, so that a switchover longer than the term (post-copy's wait for its urgent
   * channel, a slow flush) still finds them its own when it accepts. Not a commitment: nothing runs
   * here yet, and the source that handed them over never runs after. A renewal that finds a lease gone
   * stops; accept then says why.
   */
  keep(as: string): void {
    if (this.name !== null) return;
    this.startRenewing(as);
  }

  accept(as: string): void {
    this.stopRenewing();
    for (const image of this.images) {
      if (!holdsLease(image, as)) {
        const r = readLease(image);
        const now = r === null ? 'has no lease' : r.owner === '' ? 'was broken' : r.owner === as ? 'expired' : `is held by ${JSON.stringify(r.owner)}`;
        throw new MemshiftError(ErrorCode.LEASE_LOST, `${image} was not handed to this destination (${as}): its lease ${now}; not resuming`, { field: 'lease' });
      }
    }
    this.name = as;
    this.startRenewing();
  }

  giveBack(as: string): void {
    this.stopRenewing();
    for (const image of this.images) {
      const r = readLease(image);
      if (r === null || r.owner !== as || r.from === undefined) continue;
      try {
        handOverLease(image, as, r.from, this.ttlMs);
      } catch {
        // Expired meanwhile: nobody holds it, which is still safe.
      }
    }
  }

  /** Stops renewing and frees the leases this side still holds (its guest no longer runs here). */
  release(): void {
    this.stopRenewing();
    const name = this.name;
    if (name === null) return;
    for (const image of this.images) {
      try {
        if (holdsLease(image, name)) releaseLease(image, name);
      } catch {
        // Not ours any more, or unreadable: nothing of ours to free.
      }
    }
  }

  /**
   * Renews now if a third of the term went by since the last renewal: for a holder whose event loop is
   * busy for long (a guest being created), between chunks of that work. Throws MS_ERR_LEASE_LOST.
   */
  renewIfDue(): void {
    const name = this.name;
    if (name === null || performance.now() - this.renewedAt < this.ttlMs / 3) return;
    for (const image of this.images) renewLease(image, name, this.ttlMs);
    this.renewedAt = performance.now();
  }

  private stopRenewing(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Renews under `name` (the holder's own, or a destination's before it accepts) every third of the term. */
  private startRenewing(name: string | null = this.name): void {
    this.stopRenewing();
    this.renewedAt = performance.now();
    this.timer = setInterval(() => this.renew(name), Math.max(30, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
  }

  private renew(name: string | null): void {
    if (name === null) return;
    try {
      for (const image of this.images) renewLease(image, name, this.ttlMs);
      this.renewedAt = performance.now();
    } catch (err) {
      this.stopRenewing();
      // Only a runner has a guest to stop; a lease kept before accepting is checked again by accept.
      if (name !== this.name) return;
      const error = err instanceof MemshiftError ? err : new MemshiftError(ErrorCode.LEASE_LOST, `cannot renew the lease: ${(err as Error).message}`, { cause: err });
      this.hooks?.onLost(error);
    }
  }
}

/**
 * A destination's shared storage before the device state named the guest's images: it can only give
 * back whatever was handed to it, found by the lease files in the directory (the source may hand the
 * lease over while its device state is still on the way, and the link may fail in between).
 */
export class UnnamedImages implements SharedStorage {
  constructor(readonly dir: string, readonly ttlMs = DEFAULT_LEASE_TTL_MS) {}

  handOver(): void {
    throw new MemshiftError(ErrorCode.LEASE_LOST, 'a receiving guest holds no lease to hand over', { field: 'lease' });
  }

  holds(): boolean {
    return false;
  }

  accept(as: string): void {
    throw new MemshiftError(ErrorCode.LEASE_LOST, `${as} cannot accept a lease before the device state named the guest's images`, { field: 'lease' });
  }

  giveBack(as: string): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    const images = new Set(names.map((n) => /^(.+)\.lease\.\d+$/.exec(n)?.[1]).filter((n): n is string => n !== undefined));
    for (const image of images) new LeasedImages([join(this.dir, image)], this.ttlMs).giveBack(as);
  }
}
