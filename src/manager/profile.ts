// A guest's usage profile (Sandpiper's profiling engine): the last `window` samples of each resource,
// their distribution (percentiles) and a prediction of the next interval. The predictor is AR(1) on
// the window, x̂(t+1) = μ + φ·(x(t) − μ) with φ the lag-1 autocorrelation clamped to [0, 1]: a steady
// demand predicts itself, a rising one carries on rising towards its mean's side, noise regresses to
// the mean. Pure: samples in, figures out.

import { RESOURCES, type Resource, type Vector } from './resources.js';

export class UsageProfile {
  private readonly samples: Record<Resource, number[]> = { cpu: [], net: [], mem: [] };

  constructor(readonly window: number) {
    if (!Number.isInteger(window) || window < 2) throw new Error(`a profile window of ${window} samples: at least 2`);
  }

  add(sample: Vector): void {
    for (const r of RESOURCES) {
      const s = this.samples[r];
      s.push(sample[r]);
      if (s.length > this.window) s.shift();
    }
  }

  get length(): number {
    return this.samples.cpu.length;
  }

  /** The newest sample (zeros before any). */
  get last(): Vector {
    const at = (r: Resource): number => this.samples[r][this.samples[r].length - 1] ?? 0;
    return { cpu: at('cpu'), net: at('net'), mem: at('mem') };
  }

  /** The p-th percentile (0..100, nearest rank) of each resource over the window. */
  percentile(p: number): Vector {
    const q = (r: Resource): number => {
      const s = [...this.samples[r]].sort((a, b) => a - b);
      if (s.length === 0) return 0;
      return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p * s.length) / 100) - 1))];
    };
    return { cpu: q('cpu'), net: q('net'), mem: q('mem') };
  }

  /** AR(1) prediction of the next sample of each resource. */
  predict(): Vector {
    return { cpu: ar1(this.samples.cpu), net: ar1(this.samples.net), mem: ar1(this.samples.mem) };
  }
}

/** The next value of `xs` under AR(1) around its mean; the last value when too short to fit. */
export function ar1(xs: readonly number[]): number {
  const n = xs.length;
  if (n === 0) return 0;
  if (n < 3) return Math.max(0, xs[n - 1]);
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    const d = xs[i] - mean;
    den += d * d;
    if (i > 0) num += d * (xs[i - 1] - mean);
  }
  const phi = den === 0 ? 0 : Math.min(1, Math.max(0, num / den));
  return Math.max(0, mean + phi * (xs[n - 1] - mean));
}
