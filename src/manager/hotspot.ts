// Hotspot detection (Sandpiper's hotspot detector): a resource of a host is hot in an interval when its
// utilisation is above its threshold; the host is a hotspot in that resource when the resource was hot
// in at least k of the last n intervals, is hot now, and its predicted utilisation for the next
// interval is above the threshold too (counted per resource: a network surge does not make one CPU
// spike sustained). "Sustained and predicted to stay", so that a single spike moves nothing. Pure: one
// call per host per interval.

import { RESOURCES, over, type Resource, type Vector } from './resources.js';

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
  /** Intervals (of the last n) the most sustained of those resources was hot in. */
  hotIntervals: number;
  utilisation: Vector;
  predicted: Vector;
}

export class HotspotDetector {
  private readonly history = new Map<string, Record<Resource, boolean[]>>();

  constructor(readonly policy: HotspotPolicy = DEFAULT_HOTSPOT_POLICY) {
    if (!Number.isInteger(policy.k) || !Number.isInteger(policy.n) || !(policy.k >= 1 && policy.k <= policy.n)) throw new Error(`hotspot rule ${policy.k} of ${policy.n}: need whole numbers 1 ≤ k ≤ n`);
  }

  /** Records `host`'s utilisation this interval and its prediction for the next; returns the hotspot, if it is one. */
  observe(host: string, utilisation: Vector, predicted: Vector): Hotspot | null {
    const h = this.history.get(host) ?? { cpu: [], net: [], mem: [] };
    const now = over(utilisation, this.policy.threshold);
    for (const r of RESOURCES) {
      h[r].push(now.includes(r));
      if (h[r].length > this.policy.n) h[r].shift();
    }
    this.history.set(host, h);
    const count = (r: Resource): number => h[r].filter(Boolean).length;
    const resources = now.filter((r) => count(r) >= this.policy.k && predicted[r] > this.policy.threshold[r]);
    if (resources.length === 0) return null;
    return { host, resources, hotIntervals: Math.max(...resources.map(count)), utilisation, predicted };
  }

  /** Forgets a host's history (after its load was moved: the next hotspot must be sustained again). */
  reset(host: string): void {
    this.history.delete(host);
  }
}
