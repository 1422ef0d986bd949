// The record a shared image's lease file holds (lease.ts does the file work): who may run the guest
// from the image, from which generation on, until when. Pure: encode, decode, and the checks on what a
// file holds; a record that is not one is MS_ERR_LEASE_INVALID, never a lease.

import { ErrorCode, MemshiftError } from '../errors.js';

export interface LeaseRecord {
  /** Who holds it (a runner's token; empty once broken: nobody). */
  owner: string;
  /** Strictly increasing: each take, hand-over or break is the next generation. */
  generation: number;
  takenAtMs: number;
  /** Wall-clock ms after which the lease is free unless renewed (0: free now). */
  expiresAtMs: number;
  /** Who handed it over to `owner` (a hand-over's record only): where a receiver that will not run gives it back. */
  from?: string;
}

/** Longest owner token kept (a hostname, a pid, a session id). */
export const MAX_OWNER_CHARS = 256;

export function encodeLease(r: LeaseRecord): string {
  const from = r.from === undefined ? {} : { from: r.from };
  return `${JSON.stringify({ owner: r.owner, generation: r.generation, takenAtMs: r.takenAtMs, expiresAtMs: r.expiresAtMs, ...from })}\n`;
}

export function decodeLease(text: string, where: string): LeaseRecord {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw invalid(where, 'is not JSON');
  }
  const o = v as Record<string, unknown>;
  if (typeof o !== 'object' || o === null) throw invalid(where, 'is not an object');
  const { owner, generation, takenAtMs, expiresAtMs, from } = o;
  if (typeof owner !== 'string' || owner.length > MAX_OWNER_CHARS) throw invalid(where, 'has no valid owner');
  if (from !== undefined && (typeof from !== 'string' || from.length === 0 || from.length > MAX_OWNER_CHARS)) throw invalid(where, 'has no valid giver');
  if (!Number.isSafeInteger(generation) || (generation as number) < 1) throw invalid(where, 'has no valid generation');
  if (!Number.isSafeInteger(takenAtMs) || !Number.isSafeInteger(expiresAtMs) || (expiresAtMs as number) < 0) throw invalid(where, 'has no valid times');
  return { owner, generation: generation as number, takenAtMs: takenAtMs as number, expiresAtMs: expiresAtMs as number, ...(from === undefined ? {} : { from: from as string }) };
}

/** Whether `r` still binds at `nowMs`: held by someone and not expired. */
export function isHeld(r: LeaseRecord | null, nowMs: number): r is LeaseRecord {
  return r !== null && r.owner !== '' && nowMs < r.expiresAtMs;
}

function invalid(where: string, why: string): MemshiftError {
  return new MemshiftError(ErrorCode.LEASE_INVALID, `lease file ${where} ${why}: break it (memshift lease break) once you know nobody runs the guest`, { field: 'lease' });
}
