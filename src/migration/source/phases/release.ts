// The destination runs the guest: release ours for good (it never runs here again), say so with
// COMPLETE, and close. If this fails the migration still completed; the report says it was unconfirmed.

import { encodeComplete } from '../../../protocol/control.js';
import type { SourceEvent } from '../machine.js';
import type { SourceRun } from '../run.js';

export async function runRelease(run: SourceRun): Promise<SourceEvent> {
  const { channel } = run.established;
  await run.source.release?.();
  channel.phase = 'completion';
  await channel.send(encodeComplete());
  // COMPLETE is with the kernel: the migration is over. The orderly close finishes in the background
  // (the destination closes its end when it is done with the guest, which is not our time to count).
  void channel.close();
  return { type: 'released' };
}
