// A destination prepared before the migration, as a destination hypervisor is started with its RAM:
// the target is allocated (and pre-touched) before any source connects, so the migration's setup is
// the handshake only. A source whose guest is not exactly that guest is refused (and the wait goes
// on): same regions, in the same order, with the same kind, page size and page count.

import { ErrorCode, MemshiftError } from '../../errors.js';
import type { MemoryTarget, Region } from '../../memory/types.js';

/** Why `announced` cannot be received into a target prepared for `prepared`, or null when it can. */
export function regionMismatch(prepared: readonly Region[], announced: readonly Region[]): string | null {
  if (announced.length !== prepared.length) {
    return `the source's guest has ${announced.length} regions, this destination was prepared for ${prepared.length}`;
  }
  for (let i = 0; i < prepared.length; i++) {
    const p = prepared[i];
    const a = announced[i];
    const label = `region ${a.id} (${a.name})`;
    if (a.id !== p.id) return `region ${i} is ${label} at the source, region ${p.id} (${p.name}) here`;
    if (a.kind !== p.kind) return `${label} is ${a.kind} at the source, ${p.kind} here`;
    if (a.pageSize !== p.pageSize) return `${label} has ${a.pageSize}-byte pages at the source, ${p.pageSize} here`;
    if (a.pageCount > p.pageCount) return `${label} has ${a.pageCount} pages at the source: larger than the pre-allocated guest (${p.pageCount})`;
    if (a.pageCount < p.pageCount) return `${label} has ${a.pageCount} pages at the source: smaller than the pre-allocated guest (${p.pageCount})`;
  }
  return null;
}

/**
 * The createTarget of a prepared destination: hands out `target` for a matching guest, once. A second
 * migration would find memory the first one wrote (pages, hashes, post-copy bitmaps): prepare anew.
 */
export function preparedTarget(target: MemoryTarget): (regions: readonly Region[]) => MemoryTarget {
  let used = false;
  return (regions) => {
    const why = regionMismatch(target.regions, regions);
    if (why !== null) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, why);
    if (used) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'the pre-allocated guest already received a migration');
    used = true;
    return target;
  };
}
