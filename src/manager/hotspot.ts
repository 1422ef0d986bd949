// Hotspot detection (Sandpiper's hotspot detector): a host is hot in an interval when a resource's
// utilisation is above its threshold; it is a hotspot when it was hot in at least k of the last n
// intervals and the predicted utilisation of that resource for the next interval is above the
// threshold too. "Sustained and predicted to stay", so that a single spike moves nothing. Pure: one
// call per host per interval.

import { over, type Resource, type Vector } from './resources.js';

export interface HotspotPolicy {
  /** Utilisation above which a resource is overloaded, per resource (Sandpiper: 0.75 for CPU). */
  threshold: Vector;
  /** Hot in at least k of the last n intervals. */
  k: number;
  n: number;
}

export const DEFAULT_HOTSPOT_POLICY: HotspotPolicy = { threshold: { cpu: 0.75, net: 0.75, mem: 0.85 }, k: 3, n: 5 };

export interface Hotspot {
  host: string;
  /** The resources that are overloaded, sustained and predicted. */
  resources: Resource[];
  /** Intervals (of the last n) the host was hot in. */
  hotIntervals: number;
  utilisation: Vector;
  predicted: Vector;
}

export class HotspotDetector {
  private readonly history = new Map<string, boolean[]>();

  constructor(readonly policy: HotspotPolicy = DEFAULT_HOTSPOT_POLICY) {
    if (!(policy.k >= 1 && policy.k <= policy.n)) throw new Error(`hotspot rule ${policy.k} of ${policy.n}: need 1 ≤ k ≤ n`);
  }

  /** Records `host`'s utilisation this interval and its prediction for the next; returns the hotspot, if it is one. */
  observe(host: string, utilisation: Vector, predicted: Vector): Hotspot | null {
    const h = this.history.get(host) ?? [];
    h.push(over(utilisation, this.policy.threshold).length > 0);
    if (h.length > this.policy.n) h.shift();
    this.history.set(host, h);
    const hot = h.filter(Boolean).length;
    if (hot < this.policy.k) return null;
    const resources = over(utilisation, this.policy.threshold).filter((r) => predicted[r] > this.policy.threshold[r]);
    return resources.length === 0 ? null : { host, resources, hotIntervals: hot, utilisation, predicted };
  }

  /** Forgets a host's history (after its load was moved: the next hotspot must be sustained again). */
  reset(host: string): void {
    this.history.delete(host);
  }
}
