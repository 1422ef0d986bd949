// Flags that more than one migrating command takes, with their parsers: the pre-copy caps of the
// convergence policy, and how long either side waits on a silent peer. One definition, so that
// `source` and `qemu-source` (or `dest` and `qemu-dest`) cannot drift apart.

import { parseInteger, requireString, type Flags, type Parsed } from './args.js';

export const convergenceFlags: Flags = {
  'downtime-limit': { type: 'string', value: 'MS', help: 'switch over when expected downtime is at most this', default: '300' },
  'max-iterations': { type: 'string', value: 'N', help: 'pre-copy iteration cap', default: '30' },
  'max-time': { type: 'string', value: 'S', help: 'pre-copy time cap in seconds', default: '300' },
};

export function convergenceFrom(a: Parsed): { downtimeLimitMs: number; maxIterations: number; maxTimeMs: number } {
  return {
    downtimeLimitMs: parseInteger(requireString(a, 'downtime-limit'), '--downtime-limit', 1),
    maxIterations: parseInteger(requireString(a, 'max-iterations'), '--max-iterations', 1),
    maxTimeMs: parseInteger(requireString(a, 'max-time'), '--max-time', 1) * 1000,
  };
}

/** A source's waits: on a destination that takes no bytes, and on one that went silent after SWITCHOVER. */
export const sourceTimeoutFlags: Flags = {
  'stall-timeout': { type: 'string', value: 'MS', help: 'fail when the destination takes no bytes for this long', default: '20000' },
  'resolve-timeout': { type: 'string', value: 'MS', help: 'link lost after SWITCHOVER: ask the destination whether it resumed for this long before staying in doubt (exit 3)', default: '10000' },
};

export function sourceTimeoutsFrom(a: Parsed): { stallTimeoutMs: number; resolveTimeoutMs: number } {
  return {
    stallTimeoutMs: parseInteger(requireString(a, 'stall-timeout'), '--stall-timeout', 1),
    resolveTimeoutMs: parseInteger(requireString(a, 'resolve-timeout'), '--resolve-timeout', 1),
  };
}

/** A destination's waits: on a source that sends nothing, and on its queries after a lost SWITCHOVER. */
export const destinationTimeoutFlags: Flags = {
  'idle-timeout': { type: 'string', value: 'MS', help: 'fail when the source, due to send, sends nothing for this long', default: '20000' },
  'confirm-timeout': { type: 'string', value: 'MS', help: 'link lost after SWITCHOVER: answer the source\'s queries (did it resume?) for this long', default: '10000' },
};

export function destinationTimeoutsFrom(a: Parsed): { idleTimeoutMs: number; confirmTimeoutMs: number } {
  return {
    idleTimeoutMs: parseInteger(requireString(a, 'idle-timeout'), '--idle-timeout', 1),
    confirmTimeoutMs: parseInteger(requireString(a, 'confirm-timeout'), '--confirm-timeout', 1),
  };
}
