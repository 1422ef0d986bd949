// What the manager measures and plans with (after Sandpiper, NSDI 2007): three resources per guest and
// per host, as vectors. CPU in cores, network in bytes per second (sent + received), memory in bytes.
// A host's utilisation of a resource is the sum of its guests' demands over its capacity; Sandpiper's
// volume, 1 / ((1 − cpu)(1 − net)(1 − mem)), grows without bound as any one of them nears 1, so a guest
// or host loaded in one dimension ranks as loaded.

export const RESOURCES = ['cpu', 'net', 'mem'] as const;
export type Resource = (typeof RESOURCES)[number];
export type Vector = Record<Resource, number>;

export const ZERO: Vector = Object.freeze({ cpu: 0, net: 0, mem: 0 });

export function add(a: Vector, b: Vector): Vector {
  return { cpu: a.cpu + b.cpu, net: a.net + b.net, mem: a.mem + b.mem };
}

export function sub(a: Vector, b: Vector): Vector {
  return { cpu: a.cpu - b.cpu, net: a.net - b.net, mem: a.mem - b.mem };
}

export function scale(a: Vector, k: number): Vector {
  return { cpu: a.cpu * k, net: a.net * k, mem: a.mem * k };
}

/** Demand over capacity, per resource. */
export function utilisation(demand: Vector, capacity: Vector): Vector {
  return { cpu: demand.cpu / capacity.cpu, net: demand.net / capacity.net, mem: demand.mem / capacity.mem };
}

/** Utilisation never reaches 1 inside a volume: a saturated resource counts as 99 %. */
const SATURATED = 0.99;

/** Sandpiper's volume of a load `u` (utilisations): 1 when idle, large when any resource is nearly full. */
export function volume(u: Vector): number {
  return volumeOf(u.cpu, u.net, u.mem);
}

/** `volume` of three utilisations, for loops that keep no vector. */
export function volumeOf(cpu: number, net: number, mem: number): number {
  const f = (x: number): number => 1 - Math.min(SATURATED, Math.max(0, x));
  return 1 / (f(cpu) * f(net) * f(mem));
}

/** The resources of `u` above their thresholds. */
export function over(u: Vector, threshold: Vector): Resource[] {
  return RESOURCES.filter((r) => u[r] > threshold[r]);
}
