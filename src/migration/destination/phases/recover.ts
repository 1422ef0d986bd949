// Post-copy recovery on the destination: the source reconnected with HELLO role RECOVER for this
// session (accept.ts checked the id and the TLS peer). The new channel becomes the bulk link: its
// receive ring points into guest memory again, a new fault thread listens on a new port over the same
// page gate, and the source is told exactly which pages are still not here (the complement of the
// present bitmaps: pages pushed before whose copies died with the old link included) before HELLO_ACK
// names the new urgent port. Pages that arrive twice lose their claim and are discarded, as ever.
//
//   old fault thread stopped ─► receive ring ─► rearm fault thread (new port)
//   ─► MISSING_PAGES* (¬present, every region) ─► HELLO_ACK(session, capabilities, urgent port)

import { encodeHelloAck } from '../../../protocol/handshake.js';
import type { FrameLink } from '../../../transport/channel.js';
import { absentPagesFrames } from '../../missing-pages.js';
import type { DestinationRun } from '../run.js';
import { receiveIntoGuest } from './setup.js';

/** Takes `channel` as the bulk link and answers the RECOVER; returns the pages still missing here. */
export async function answerRecovery(run: DestinationRun, channel: FrameLink, session: Uint8Array): Promise<number> {
  const target = run.target!;
  const urgent = run.urgent!;
  channel.phase = 'post-copy recovery';
  receiveIntoGuest(run, channel);
  const port = await urgent.rearm(channel.localHost);
  let missing = 0;
  for (const region of target.regions) {
    const m = absentPagesFrames(region, target.slabsOf(region.id));
    for (const f of m.frames) await channel.send(f);
    missing += m.pages;
  }
  urgent.recount(missing);
  await channel.send(encodeHelloAck({ session, capabilities: run.capabilities, urgentPort: port }));
  channel.phase = 'post-copy';
  return missing;
}
