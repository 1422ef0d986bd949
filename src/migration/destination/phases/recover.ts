// Recovering a lost link on the destination: the source reconnected with HELLO role RECOVER for this
// session (accept.ts checked the id and the TLS peer). The new channel becomes the bulk link: its
// receive ring points into guest memory again and, when post-copy was negotiated, a new fault thread
// listens on a new port over the same page gate. Then the answer, before HELLO_ACK names that port:
//
// - post-copy: the pages still not here (the complement of the present bitmaps: pages pushed before
//   whose copies died with the old link included), as MISSING_PAGES; pages that arrive twice lose
//   their claim and are discarded, as ever;
// - a pass before SWITCHOVER: the hash of every page as it is held here (PAGE_HASHES,
//   page-hashes.ts), from which the source tells which of its pages never landed;
// - the disks' blocks likewise (BLOCK_RECOVERY, block-recovery.ts): the hashes of those held, or in
//   post-copy those absent.
//
//   old fault thread stopped ─► receive ring ─► [rearm fault thread (new port)]
//   ─► MISSING_PAGES* | PAGE_HASHES* ─► HELLO_ACK(session, capabilities, urgent port)

import { encodeHelloAck } from '../../../protocol/handshake.js';
import { BoardState } from '../../postcopy-board.js';
import type { FrameLink } from '../../../transport/channel.js';
import { absentPagesFrames } from '../../missing-pages.js';
import { pageHashFrames } from '../../page-hashes.js';
import type { DestinationRun } from '../run.js';
import { receiveIntoGuest } from './setup.js';
import { absentBlockFrames, heldBlockFrames } from '../../block-recovery.js';
import { Capability } from '../../../protocol/constants.js';

/** Takes `channel` as the bulk link and answers the RECOVER; returns the pages still missing (post-copy) or 0. */
export async function answerRecovery(run: DestinationRun, channel: FrameLink, session: Uint8Array, postcopy: boolean): Promise<number> {
  const target = run.target!;
  const urgent = run.urgent;
  channel.phase = 'link recovery';
  receiveIntoGuest(run, channel);
  // A thread that an earlier, failed attempt started is stopped first (it would hold its port).
  await urgent?.stop(BoardState.LINK_LOST);
  const port = urgent === null ? 0 : await urgent.rearm(channel.localHost);
  let missing = 0;
  for (const region of target.regions) {
    const slabs = target.slabsOf(region.id);
    if (postcopy) {
      const m = absentPagesFrames(region, slabs);
      for (const f of m.frames) await channel.send(f);
      missing += m.pages;
    } else {
      for (const f of pageHashFrames(region, slabs)) await channel.send(f);
    }
  }
  // Blocks: named where the source reads the names (else it sends every block again that it ever
  // sent, and in post-copy those here are dropped).
  const devices = run.disks?.devices ?? [];
  const absent = postcopy ? absentBlockFrames(devices) : null;
  if (run.disks !== null && (run.capabilities & Capability.BLOCK_RECOVERY) !== 0) {
    for (const f of absent?.frames ?? heldBlockFrames(run.disks.digest, devices.length)) await channel.send(f);
  }
  if (absent !== null) urgent!.recount(missing + absent.blocks);
  await channel.send(encodeHelloAck({ session, capabilities: run.capabilities, urgentPort: port }));
  return missing;
}
