// The single-runner lease of a shared image: whoever runs a guest from an image that two hosts can
// reach must hold it, so that two runners of one image cannot both be live. It lives beside the image as one file per generation
// (`IMAGE.lease.N`, a JSON record: lease-record.ts); the highest generation is the lease. Each change
// of hands creates the next generation with an exclusive link (link(2) fails when the name exists), so
// of two processes taking, handing over or breaking at once exactly one wins, on any POSIX file system
// both hosts mount. Only the holder rewrites its own generation (renewing its expiry), by rename.
//
//   take:       current free or expired (or ours)  ─► create N+1 {owner: us}      ─► else MS_ERR_LEASE_HELD
//   hand over:  current is ours                   ─► create N+1 {owner: them}    (we must not run after)
//   break:      anyone (the operator)             ─► create N+1 {owner: '', expired}
//   renew:      current is ours                   ─► rewrite N with a later expiry ─► else MS_ERR_LEASE_LOST
//
// Generations below N − 1 are removed as new ones are made. Time is the hosts' wall clock: leases are
// meant to be held for seconds to minutes and renewed well within their term.

import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ErrorCode, MemshiftError, invalidArgument } from '../errors.js';
import { MAX_OWNER_CHARS, decodeLease, encodeLease, isHeld, type LeaseRecord } from './lease-record.js';

export type { LeaseRecord } from './lease-record.js';

/** The lease of `image` now: its highest generation, or null when it never had one. */
export function readLease(image: string): LeaseRecord | null {
  const n = highestGeneration(image);
  if (n === 0) return null;
  const path = generationPath(image, n);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    // Removed between the listing and the read: a newer generation exists now.
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return readLease(image);
    throw io(`cannot read ${path}`, cause);
  }
  const r = decodeLease(text, path);
  if (r.generation !== n) throw new MemshiftError(ErrorCode.LEASE_INVALID, `lease file ${path} says generation ${r.generation}`, { field: 'lease' });
  return r;
}

/**
 * Takes the lease of `image` for `owner` for `ttlMs`: when it is free, expired, or already `owner`'s.
 * Throws MS_ERR_LEASE_HELD naming the holder otherwise, or when another taker won the same generation.
 */
export function takeLease(image: string, owner: string, ttlMs: number, nowMs = Date.now()): LeaseRecord {
  checkOwner(owner);
  const cur = readLease(image);
  if (isHeld(cur, nowMs) && cur.owner !== owner) throw held(image, cur, nowMs);
  return createNext(image, cur?.generation ?? 0, { owner, takenAtMs: nowMs, expiresAtMs: nowMs + checkTtl(ttlMs) });
}

/** Extends `owner`'s lease to now + `ttlMs`. MS_ERR_LEASE_LOST when the lease is no longer theirs. */
export function renewLease(image: string, owner: string, ttlMs: number, nowMs = Date.now()): LeaseRecord {
  const cur = readLease(image);
  if (cur === null || cur.owner !== owner || !isHeld(cur, nowMs)) throw lost(image, owner, cur);
  const next = { ...cur, expiresAtMs: nowMs + checkTtl(ttlMs) };
  const tmp = writeTemp(image, encodeLease(next));
  try {
    renameSync(tmp, generationPath(image, cur.generation));
  } catch (cause) {
    unlinkQuiet(tmp);
    throw io(`cannot renew the lease of ${image}`, cause);
  }
  // A hand-over or break that raced the rename made a newer generation: the lease is not ours any more.
  if (highestGeneration(image) !== cur.generation) throw lost(image, owner, readLease(image));
  return next;
}

/**
 * Hands `owner`'s lease to `to` (the next generation, `to` holding it for `ttlMs`). From here `owner`
 * must not run the guest. MS_ERR_LEASE_LOST when it was not `owner`'s.
 */
export function handOverLease(image: string, owner: string, to: string, ttlMs: number, nowMs = Date.now()): LeaseRecord {
  checkOwner(to);
  const cur = readLease(image);
  if (cur === null || cur.owner !== owner || !isHeld(cur, nowMs)) throw lost(image, owner, cur);
  return createNext(image, cur.generation, { owner: to, takenAtMs: nowMs, expiresAtMs: nowMs + checkTtl(ttlMs), from: owner });
}

/** Gives up `owner`'s lease (the next generation, free): a runner that took it and then did not start. */
export function releaseLease(image: string, owner: string, nowMs = Date.now()): LeaseRecord {
  const cur = readLease(image);
  if (cur === null || cur.owner !== owner || !isHeld(cur, nowMs)) throw lost(image, owner, cur);
  return createNext(image, cur.generation, { owner: '', takenAtMs: nowMs, expiresAtMs: 0 });
}

/**
 * The operator's way out of an in-doubt case: a free lease at the next generation, whoever held it
 * (and whatever the current file holds, a damaged one included).
 */
export function breakLease(image: string, nowMs = Date.now()): LeaseRecord {
  return createNext(image, highestGeneration(image), { owner: '', takenAtMs: nowMs, expiresAtMs: 0 });
}

/** Whether `owner` holds the lease of `image` now (what a runner checks before it starts the guest). */
export function holdsLease(image: string, owner: string, nowMs = Date.now()): boolean {
  const cur = readLease(image);
  return isHeld(cur, nowMs) && cur.owner === owner;
}

function createNext(image: string, current: number, fields: Omit<LeaseRecord, 'generation'>): LeaseRecord {
  const next: LeaseRecord = { ...fields, generation: current + 1 };
  const tmp = writeTemp(image, encodeLease(next));
  try {
    linkSync(tmp, generationPath(image, next.generation));
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new MemshiftError(ErrorCode.LEASE_HELD, `the lease of ${image} changed hands while this process took it (another process made generation ${next.generation} first)`, { field: 'lease' });
    }
    throw io(`cannot write the lease of ${image}`, cause);
  } finally {
    unlinkQuiet(tmp);
  }
  syncDirectory(image);
  for (let g = next.generation - 2; g >= 1 && g >= next.generation - 4; g--) unlinkQuiet(generationPath(image, g));
  return next;
}

function generationPath(image: string, n: number): string {
  return `${image}.lease.${n}`;
}

function highestGeneration(image: string): number {
  const prefix = `${basename(image)}.lease.`;
  let names: string[];
  try {
    names = readdirSync(dirname(image));
  } catch (cause) {
    throw io(`cannot list ${dirname(image)}`, cause);
  }
  let n = 0;
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const g = Number(name.slice(prefix.length));
    if (Number.isSafeInteger(g) && g > n && String(g) === name.slice(prefix.length)) n = g;
  }
  return n;
}

function writeTemp(image: string, text: string): string {
  const tmp = join(dirname(image), `.${basename(image)}.lease-${randomBytes(6).toString('hex')}`);
  let fd: number;
  try {
    fd = openSync(tmp, 'wx', 0o644);
  } catch (cause) {
    throw io(`cannot write beside ${image}`, cause);
  }
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return tmp;
}

function syncDirectory(image: string): void {
  try {
    const fd = openSync(dirname(image), 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Not every file system lets a directory be opened for fsync; the link itself is already atomic.
  }
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

function checkOwner(owner: string): void {
  if (typeof owner !== 'string' || owner.length === 0 || owner.length > MAX_OWNER_CHARS) throw invalidArgument('owner', `must be 1 to ${MAX_OWNER_CHARS} characters`, owner);
}

function checkTtl(ttlMs: number): number {
  if (!Number.isSafeInteger(ttlMs) || ttlMs < 1) throw invalidArgument('ttlMs', 'must be a positive integer', ttlMs);
  return ttlMs;
}

function held(image: string, r: LeaseRecord, nowMs: number): MemshiftError {
  return new MemshiftError(ErrorCode.LEASE_HELD, `${image} is leased to ${JSON.stringify(r.owner)} (generation ${r.generation}) for another ${Math.ceil((r.expiresAtMs - nowMs) / 1000)} s: another runner may be running this guest`, { field: 'lease' });
}

function lost(image: string, owner: string, r: LeaseRecord | null): MemshiftError {
  const now = r === null ? 'has no lease' : r.owner === '' ? `was broken (generation ${r.generation})` : r.owner === owner ? `expired (generation ${r.generation})` : `is held by ${JSON.stringify(r.owner)} (generation ${r.generation})`;
  return new MemshiftError(ErrorCode.LEASE_LOST, `${JSON.stringify(owner)} no longer holds the lease of ${image}: it ${now}; this runner must not run the guest`, { field: 'lease' });
}

function io(message: string, cause: unknown): MemshiftError {
  return new MemshiftError(ErrorCode.IO, `${message}: ${(cause as Error).message}`, { cause });
}
