// The destination's setup phase, between an accepted HELLO and HELLO_ACK: allocate the target (the
// integrator may refuse the regions by throwing), pre-touch it if asked, arm post-copy when both ends
// want it and the target can gate pages, and point the channel's receive ring into guest memory.
// Nothing may be received before this ends; the machine rejects pages that try.
//
//   createTarget ─► [pre-touch RAM] ─► [urgent listener: page gate + port] ─► applier ─► HELLO_ACK

import { ErrorCode, MemshiftError, toMemshiftError } from '../../../errors.js';
import type { Slab } from '../../../memory/slab.js';
import { pretouch } from '../../../memory/pretouch.js';
import type { MemoryTarget } from '../../../memory/types.js';
import { Capability, Limits } from '../../../protocol/constants.js';
import { encodeHelloAck, type Hello } from '../../../protocol/handshake.js';
import { ScratchAgent } from '../../../memory/scratch-agents.js';
import { BatchApplier } from '../../../pipeline/apply.js';
import type { FrameLink } from '../../../transport/channel.js';
import type { DestEvent } from '../machine.js';
import type { DestinationRun } from '../run.js';
import { UrgentListener } from '../urgent-listener.js';

const OUR_CAPABILITIES = Capability.XBZRLE | Capability.LZ4 | Capability.POSTCOPY | Capability.UNWRITTEN_ZERO | Capability.SHARED_STORAGE | Capability.BLOCKS | Capability.POSTCOPY_BLOCKS | Capability.BLOCK_RECOVERY | Capability.ZERO_BLOCKS;

/** Pre-touches every RAM region of `target` (memory/pretouch.ts). */
export function pretouchRam(target: MemoryTarget): Promise<void> {
  return pretouch(target.regions.filter((r) => r.kind === 'ram').flatMap((r) => [...target.slabsOf(r.id)]));
}

/** The slab whose arena holds the receive ring. */
export function receivingSlab(run: DestinationRun): Slab {
  return run.target!.slabsOf(run.target!.regions[0].id)[0];
}

/** Points the channel's receive ring into guest memory's arena (frames are applied in place from there). */
export function receiveIntoGuest(run: DestinationRun, channel: FrameLink): void {
  const first = receivingSlab(run);
  channel.switchReceiveBuffer(new Uint8Array(first.memory.buffer, first.layout.arena, first.layout.arenaBytes), Limits.MAX_FRAME_BODY_BYTES);
}

function createTarget(run: DestinationRun, hello: Hello): MemoryTarget {
  try {
    return run.options.createTarget(hello.regions);
  } catch (err) {
    const e = toMemshiftError(err, ErrorCode.HANDSHAKE_REJECTED, 'createTarget');
    throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `this destination refused the guest: ${e.message}`, { cause: e });
  }
}

export async function runSetup(run: DestinationRun, hello: Hello): Promise<DestEvent> {
  const { channel } = run;
  channel.phase = 'setup';
  const target = createTarget(run, hello);
  run.target = target;
  // Its vCPU threads load meanwhile; HELLO_ACK waits for them (MemoryTarget.ready). Settled into a
  // value at once: a refusal must not be an unhandled rejection while the setup awaits other things.
  const targetReady = Promise.resolve(target.ready?.()).then(() => null, (err: unknown) => new MemshiftError(
    ErrorCode.HANDSHAKE_REJECTED, `this destination's guest did not get ready: ${err instanceof Error ? err.message : String(err)}`, { cause: err },
  ));
  run.record.guestBytes = target.regions.reduce((n, r) => n + r.pageCount * r.pageSize, 0);
  if (run.options.preallocatedMs !== undefined) {
    run.record.prealloc = { enabled: true, ms: run.options.preallocatedMs, beforeMigration: true };
  } else if (run.options.prealloc) {
    const t = performance.now();
    await pretouchRam(target);
    run.record.prealloc = { enabled: true, ms: performance.now() - t, beforeMigration: false };
  } else {
    run.record.prealloc = { enabled: false, ms: 0, beforeMigration: false };
  }
  let capabilities = hello.capabilities & OUR_CAPABILITIES;
  // Pages never sent stay as they are here: only a target that holds zeros there may say so.
  if (target.unwrittenPagesAreZero !== true) capabilities &= ~Capability.UNWRITTEN_ZERO;
  if (target.reachesSharedStorage !== true) capabilities &= ~Capability.SHARED_STORAGE;
  if (target.receiveBlockDevices === undefined) capabilities &= ~Capability.BLOCKS;
  // Pages in a file (types.ts, RegionFile) are applied through a window: a delta's base is not there,
  // and nothing can make another process's vCPUs wait on present bits.
  if (target.regions.some((r) => r.file !== undefined)) capabilities &= ~(Capability.XBZRLE | Capability.POSTCOPY);
  if ((capabilities & Capability.POSTCOPY) !== 0) {
    if (target.enablePageGate === undefined) capabilities &= ~Capability.POSTCOPY;
    else {
      run.urgent = await UrgentListener.start(target, hello.session, channel.localHost, run.options.handshakeTimeoutMs, {
        security: run.options.security, peerIdentity: channel.peerIdentity,
      });
    }
  }
  // Blocks are faulted only where both disks and post-copy are on.
  if ((capabilities & Capability.BLOCKS) === 0 || run.urgent === null) capabilities &= ~Capability.POSTCOPY_BLOCKS;
  if ((capabilities & Capability.BLOCKS) === 0) capabilities &= ~(Capability.BLOCK_RECOVERY | Capability.ZERO_BLOCKS);
  run.applier = new BatchApplier(target, capabilities, ScratchAgent.MAIN);
  run.capabilities = capabilities;
  receiveIntoGuest(run, channel);
  const notReady = await targetReady;
  if (notReady !== null) throw notReady;
  channel.phase = 'pre-copy';
  run.record.setupTimeMs = performance.now() - run.record.startedAt;
  run.passStart = { pages: 0, bytes: run.bytesReceived, at: performance.now() };
  await channel.send(encodeHelloAck({ session: hello.session, capabilities, urgentPort: run.urgent?.port ?? 0 }));
  run.log(`accepted ${hello.mode} migration from ${channel.peer}: ${hello.regions.map((r) => `${r.name} ${r.pageCount}×${r.pageSize}`).join(', ')}`);
  return { type: 'ready', postcopy: run.urgent !== null };
}
