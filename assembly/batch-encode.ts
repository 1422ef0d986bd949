// Encodes the pages of a slab marked in a snapshot bitmap into page-batch entries and payload
// (layout in layout.ts, grammar in src/protocol/page-batch.ts). One call per task of ~1-4 MiB, so
// no per-page JS call sits on the hot path.
//
// No lost write: the caller synced and cleared the dirty bitmap before this runs, so a guest write
// landing while a page is copied re-dirties it for the next iteration. Every page is read once into
// the bytes that are sent (or into the XBZRLE scratch), and hashed as stored, so the hash in the entry
// always matches the payload even when the guest writes the page meanwhile.

import { bitmapNextSet } from './bitmap';
import { copyAndHash, storePageHash } from './hash';
import { CACHE_TAG_BUSY, ENCODING_RAW, ENCODING_XBZRLE, ENCODING_ZERO, ENTRY_BYTES } from './layout';
import { xorDeltaEncode } from './xbzrle';
import { isZeroPage } from './zero-page';
import { zeroPageHash } from './zero-hash';

/** Result words written by encodePages at `result`. */
@inline const R_ENTRIES: usize = 0;
@inline const R_NEXT_PAGE: usize = 4;
@inline const R_PAYLOAD: usize = 8;
@inline const R_ZERO: usize = 12;
@inline const R_RAW: usize = 16;
@inline const R_XBZRLE: usize = 20;
@inline const R_CACHE_MISS: usize = 24;

@inline function writeEntry(entries: usize, n: u32, page: u32, encoding: u32, size: u32, hash: u64): void {
  const e = entries + <usize>n * ENTRY_BYTES;
  store<u32>(e, page);
  store<u32>(e, size | (encoding << 24), 4);
  store<u64>(e, hash, 8);
}

/**
 * Encodes pages marked in `snapshot` within slab pages [from, to), clearing each bit it consumes
 * (atomically, a word at a time: a page whose bit another thread cleared first is skipped),
 * until the range ends, `maxEntries` entries are written, or the payload could not take one more raw
 * page. XBZRLE is used when `cacheSlots` > 0 (never in the first pass: the caller passes 0). With
 * `cacheReadOnly` (the final pass: no pass follows to use what it would store) a page in the cache
 * goes as a delta and the cache is left as it is: no slot written, no tag moved, so a cache that no
 * pass filled yet is never written for the first time inside the downtime.
 * Returns the entry count; details go to the u32s at `result` (see R_*).
 */
export function encodePages(
  ram: usize, pageSize: u32, snapshot: usize, from: u32, to: u32,
  regionPageBase: u32, keyBase: u64, hashes: usize, digestPtr: usize,
  entries: usize, maxEntries: u32, payload: usize, payloadLimit: u32,
  cache: usize, cacheTags: usize, cacheSlots: u32, cacheReadOnly: u32, scratch: usize, deltaLimit: u32,
  result: usize,
): u32 {
  const zeroHash = zeroPageHash(pageSize);
  let n: u32 = 0, used: u32 = 0, zeros: u32 = 0, raws: u32 = 0, deltas: u32 = 0, misses: u32 = 0;
  let digest: u64 = 0;
  let next = from;
  // Pages are taken from the snapshot a 32-bit word at a time (one atomic for up to 32 pages, never
  // more than are sure to fit in this batch); `held` are taken pages not encoded yet.
  let held: u32 = 0, heldBase: u32 = 0;
  while (true) {
    if (held == 0) {
      if (n >= maxEntries || used + pageSize > payloadLimit) break;
      const found = bitmapNextSet(snapshot, to, next);
      if (found < 0) {
        next = to;
        break;
      }
      const first = <u32>found;
      heldBase = first & ~31;
      const room = min<u32>(maxEntries - n, (payloadLimit - used) / pageSize);
      const end = min<u32>(min<u32>(heldBase + 32, to), first + room);
      const width = end - first;
      const mask: u32 = (width == 32 ? 0xffffffff : ((<u32>1 << width) - 1)) << (first & 31);
      // Take them atomically: in post-copy the fault thread may take some first, and then they are its.
      held = atomic.and<u32>(snapshot + (<usize>(heldBase >> 5) << 2), ~mask) & mask;
      next = end;
      continue;
    }
    const page = heldBase + <u32>ctz<u32>(held);
    held &= held - 1;
    const src = ram + <usize>page * pageSize;
    const out = payload + used;
    let encoding = ENCODING_RAW, size = pageSize;
    let hash: u64;
    if (cacheSlots == 0) {
      if (isZeroPage(src, pageSize)) {
        encoding = ENCODING_ZERO; size = 0; hash = zeroHash;
      } else {
        hash = copyAndHash(out, src, pageSize);
      }
    } else if (cacheReadOnly != 0) {
      // Nothing writes the cache in this pass, so a slot tagged for this page holds what was sent.
      const slotIndex = page % cacheSlots;
      if (atomic.load<u32>(cacheTags + (<usize>slotIndex << 2)) == page + 1) {
        hash = copyAndHash(scratch, src, pageSize);
        if (hash == zeroHash && isZeroPage(scratch, pageSize)) {
          encoding = ENCODING_ZERO; size = 0;
        } else {
          const room = payloadLimit - used;
          const d = xorDeltaEncode(cache + <usize>slotIndex * pageSize, scratch, pageSize, out, deltaLimit < room ? deltaLimit : room);
          if (d >= 0) {
            encoding = ENCODING_XBZRLE; size = <u32>d;
          } else {
            memory.copy(out, scratch, pageSize);
          }
        }
      } else if (isZeroPage(src, pageSize)) {
        encoding = ENCODING_ZERO; size = 0; hash = zeroHash;
      } else {
        misses++;
        hash = copyAndHash(out, src, pageSize);
      }
    } else {
      // Read the page once into scratch: the delta, the cache and the hash all see that snapshot.
      hash = copyAndHash(scratch, src, pageSize);
      const tag = cacheTags + (<usize>(page % cacheSlots) << 2);
      const slot = cache + <usize>(page % cacheSlots) * pageSize;
      if (hash == zeroHash && isZeroPage(scratch, pageSize)) {
        encoding = ENCODING_ZERO; size = 0;
        atomic.cmpxchg<u32>(tag, page + 1, 0);
      } else {
        const owner = atomic.xchg<u32>(tag, CACHE_TAG_BUSY);
        if (owner == CACHE_TAG_BUSY) {
          // Another encoder holds this slot for a different page: send raw, leave the slot alone.
          memory.copy(out, scratch, pageSize);
        } else {
          if (owner == page + 1) {
            const room = payloadLimit - used;
            const d = xorDeltaEncode(slot, scratch, pageSize, out, deltaLimit < room ? deltaLimit : room);
            if (d >= 0) {
              encoding = ENCODING_XBZRLE; size = <u32>d;
            } else {
              memory.copy(out, scratch, pageSize);
            }
          } else {
            misses++;
            memory.copy(out, scratch, pageSize);
          }
          memory.copy(slot, scratch, pageSize);
          atomic.store<u32>(tag, page + 1);
        }
      }
    }
    digest ^= storePageHash(hashes, page, keyBase + <u64>(regionPageBase + page), hash);
    writeEntry(entries, n, regionPageBase + page, encoding, size, hash);
    n++;
    used += size;
    if (encoding == ENCODING_ZERO) zeros++;
    else if (encoding == ENCODING_RAW) raws++;
    else deltas++;
  }
  // One atomic for the batch (see storePageHash): the digest is read only once encoding has stopped.
  if (digest != 0) atomic.xor<u64>(digestPtr, digest);
  if (next > to) next = to;
  store<u32>(result + R_ENTRIES, n);
  store<u32>(result + R_NEXT_PAGE, next);
  store<u32>(result + R_PAYLOAD, used);
  store<u32>(result + R_ZERO, zeros);
  store<u32>(result + R_RAW, raws);
  store<u32>(result + R_XBZRLE, deltas);
  store<u32>(result + R_CACHE_MISS, misses);
  return n;
}
