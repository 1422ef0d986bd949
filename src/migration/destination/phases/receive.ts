// Frames from the source, turned into the machine's events. Receiving is synchronous: a PAGE_BATCH is
// applied where it landed (the receive ring is guest memory) before the next read reuses the buffer,
// so it is applied here, if and only if the machine's current state accepts pages; every control frame
// becomes an event. What a state may receive is the machine's business, not this file's.
//
//   PAGE_BATCH ─► apply (kernel verifies every page) ─► no event
//   DISKS ─► the target makes the disks;  BLOCKS ─► each block checked against its hash, written ─► no event
//   (post-copy: only blocks not here yet, each then made present)
//   ITERATION_END | DEVICE_STATE | MISSING_PAGES | SWITCHOVER | COMPLETE | ERROR ─► event

import { ErrorCode, MemshiftError, isMemshiftError } from '../../../errors.js';
import { Capability, DISK_REGION_BASE, FrameType, SwitchoverMode } from '../../../protocol/constants.js';
import { blocksCheckedLength, decodeBlocks, decodeDisks } from '../../../protocol/blocks.js';
import { BlockBuffers } from '../../../pipeline/block-buffers.js';
import { writeAbsentBlocks } from '../../../pipeline/absent-blocks.js';
import { DiskDigest } from '../../disk-digest.js';
import { decodeComplete, decodeError, decodeIterationEnd, decodeMissingPages, decodeSwitchover, peerError, type MissingPages } from '../../../protocol/control.js';
import { frameTypeName } from '../../../protocol/frame.js';
import type { Frame } from '../../../protocol/frame-reader.js';
import { acceptsPages, claimsPages, type DestEvent, type DestState } from '../machine.js';
import type { DestinationRun } from '../run.js';
import { receivingSlab } from './setup.js';
import { kernelsOf } from '../../../memory/slab.js';
import { scratchSlot } from '../../../memory/slab-layout.js';
import { ScratchAgent } from '../../../memory/scratch-agents.js';

export function receiveFrame(run: DestinationRun, state: DestState, frame: Frame): DestEvent | null {
  // A pass (or the switch) begins with its first frame after an ITERATION_END (DISKS precedes the first pass).
  if (run.sinceLastPass === 0 && frame.type !== FrameType.ITERATION_END && frame.type !== FrameType.DISKS) run.sinceLastPass = performance.now();
  switch (frame.type) {
    case FrameType.PAGE_BATCH:
      applyBatch(run, state, frame);
      return null;
    case FrameType.DISKS:
      receiveDisks(run, state, frame);
      return null;
    case FrameType.BLOCKS:
      writeBlocks(run, state, frame);
      return null;
    case FrameType.ITERATION_END: {
      const m = decodeIterationEnd(frame.buf, frame.bodyOffset, frame.bodyLength);
      run.lastIteration = m.iteration;
      // A pass with no page begins and ends here.
      run.lastPassBegan = run.sinceLastPass > 0 ? run.sinceLastPass : performance.now();
      run.sinceLastPass = 0;
      recordReceivedPass(run, m.iteration);
      // The pass's disk blocks go to the disk while the next pass arrives (a failure shows at the resume's flush).
      run.flushDisks().catch(() => undefined);
      run.passApplyMs = 0;
      run.channel.phase = `pre-copy pass ${m.iteration + 1}`;
      run.progress(() => run.snapshot(state.kind), true);
      return { type: 'iteration-end', iteration: m.iteration };
    }
    case FrameType.DEVICE_STATE: {
      const body = frame.buf.slice(frame.bodyOffset, frame.bodyOffset + frame.bodyLength);
      checkDeviceState(run, body);
      run.deviceState = body;
      return { type: 'device-state' };
    }
    case FrameType.MISSING_PAGES: {
      const m = decodeMissingPages(frame.buf, frame.bodyOffset, frame.bodyLength);
      // Outside a post-copy switchover the machine refuses the event; mark nothing then.
      if (run.urgent !== null && state.kind === 'receiving' && state.postcopy) {
        if (m.regionId >= DISK_REGION_BASE) {
          markMissingBlocks(run, m);
          return { type: 'missing-pages' };
        }
        const target = run.target!;
        const region = target.regions.find((r) => r.id === m.regionId);
        if (region === undefined) throw new MemshiftError(ErrorCode.BATCH_REGION_UNKNOWN, `MISSING_PAGES names region ${m.regionId}`, { regionId: m.regionId });
        run.urgent.markMissing(region, target.slabsOf(region.id), m);
      }
      return { type: 'missing-pages' };
    }
    case FrameType.SWITCHOVER: {
      const order = decodeSwitchover(frame.buf, frame.bodyOffset, frame.bodyLength);
      return { type: 'switchover', postcopy: order.mode === SwitchoverMode.POSTCOPY, order };
    }
    case FrameType.COMPLETE:
      decodeComplete(frame.buf, frame.bodyOffset, frame.bodyLength);
      return { type: 'complete' };
    case FrameType.ERROR:
      return { type: 'error', error: peerError(decodeError(frame.buf, frame.bodyOffset, frame.bodyLength), run.channel.peer) };
    default:
      throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `${frameTypeName(frame.type)} is not expected from a source`, { frameType: frame.type });
  }
}

/** DISKS, once, before any block: the target makes the disks the blocks are written to. */
function receiveDisks(run: DestinationRun, state: DestState, frame: Frame): void {
  if ((run.capabilities & Capability.BLOCKS) === 0 || run.disks !== null || state.kind !== 'receiving') {
    throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `DISKS while the destination is ${state.kind}${run.disks !== null ? ' (sent twice)' : ''}`, { frameType: frame.type, phase: state.kind });
  }
  const shapes = decodeDisks(frame.buf, frame.bodyOffset, frame.bodyLength);
  const devices = run.target!.receiveBlockDevices!(shapes);
  if ((run.capabilities & Capability.POSTCOPY_BLOCKS) !== 0 && devices.some((d) => d.present === undefined)) {
    throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, "the target's disks have no present bitmap (BlockDevice.present), so their blocks cannot be faulted in post-copy");
  }
  const buffers = new BlockBuffers(1);
  // Blocks are checked where they were received, in the arena, with the main thread's scratch for their hashes.
  const slab = receivingSlab(run);
  buffers.receivedIn(kernelsOf(slab), scratchSlot(slab.layout, ScratchAgent.MAIN).page);
  run.disks = { shapes, devices, buffers, digest: new DiskDigest(shapes), flushing: Promise.resolve() };
}

/** MISSING_PAGES of a disk (POSTCOPY_BLOCKS): the blocks the source still has at a post-copy switchover. */
function markMissingBlocks(run: DestinationRun, m: MissingPages): void {
  const disk = m.regionId - DISK_REGION_BASE;
  const device = run.disks?.devices[disk];
  if ((run.capabilities & Capability.POSTCOPY_BLOCKS) === 0 || device?.present === undefined) {
    throw new MemshiftError(ErrorCode.BATCH_REGION_UNKNOWN, `MISSING_PAGES names disk ${disk}, which this session does not fault`, { regionId: m.regionId });
  }
  run.urgent!.markMissingBlocks(disk, device.present, device.blocks, m);
}

/**
 * A run of disk blocks: each block checked against its hash (the CRC covered the hashes), then written
 * at its offset; in post-copy only the blocks not here yet (absent-blocks.ts).
 */
function writeBlocks(run: DestinationRun, state: DestState, frame: Frame): void {
  const disks = run.disks;
  const postcopy = state.kind === 'postcopy-running' && (run.capabilities & Capability.POSTCOPY_BLOCKS) !== 0;
  if (disks === null || (state.kind !== 'receiving' && !postcopy)) {
    throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `BLOCKS while the destination is ${state.kind}${disks === null ? ' (no DISKS before)' : ''}`, { frameType: frame.type, phase: state.kind });
  }
  const b = decodeBlocks(frame.buf, frame.bodyOffset, frame.bodyLength, disks.shapes);
  if (frame.checkedLength !== blocksCheckedLength(b.count, b.zero)) throw new MemshiftError(ErrorCode.FRAME_MALFORMED, 'BLOCKS: the CRC must cover the head and every hash', { frameType: frame.type });
  if (b.zero && (run.capabilities & Capability.ZERO_BLOCKS) === 0) throw new MemshiftError(ErrorCode.FRAME_MALFORMED, 'BLOCKS: a run of zero blocks without capability ZERO_BLOCKS', { frameType: frame.type });
  const blockBytes = disks.shapes[b.disk].blockBytes;
  const device = disks.devices[b.disk];
  const t = performance.now();
  if (b.zero) {
    writeZeroBlocks(run, state, b.disk, b.firstBlock, b.count);
    run.passApplyMs += performance.now() - t;
    return;
  }
  disks.buffers.verify(frame.buf, b.hashesOffset, b.dataOffset, b.count, blockBytes, () => `BLOCKS disk ${b.disk} blocks [${b.firstBlock}, +${b.count})`);
  // A pass's blocks are written behind (the flush before the resume waits for them); a post-copy
  // block at once, since the guest may read it as soon as it is marked here.
  const put = !postcopy && device.writeBehind !== undefined ? device.writeBehind.bind(device) : device.write.bind(device);
  const write = (k: number, end: number): void => {
    put(b.firstBlock + k, end - k, frame.buf.subarray(b.dataOffset + k * blockBytes, b.dataOffset + end * blockBytes));
    disks.digest.record(b.disk, b.firstBlock + k, end - k, frame.buf, b.hashesOffset + 8 * k);
  };
  if (!postcopy) write(0, b.count);
  else run.urgent!.addBlocks(writeAbsentBlocks(device.present!, b.firstBlock, b.count, write));
  run.passApplyMs += performance.now() - t;
}

/**
 * A run of zero blocks (ZERO_BLOCKS): the images start empty, so only a block that holds data here is
 * written (with zeros); each is recorded as a zero block and, in post-copy, made present if absent.
 */
function writeZeroBlocks(run: DestinationRun, state: DestState, disk: number, first: number, count: number): void {
  const disks = run.disks!;
  const device = disks.devices[disk];
  const held = disks.digest.hashes(disk);
  const zero = disks.digest.zeroHash(disk);
  // Made only where a block holds data here: a source names holes so, which hold zeros already.
  let zeros: { block: Uint8Array; hash: Uint8Array } | null = null;
  const write = (k: number, end: number): void => {
    for (let block = first + k; block < first + end; block++) {
      if (held[block] === zero) continue;
      zeros ??= { block: new Uint8Array(device.blockBytes), hash: new Uint8Array(new BigUint64Array([zero]).buffer) };
      device.write(block, 1, zeros.block);
      disks.digest.record(disk, block, 1, zeros.hash, 0);
    }
  };
  if (state.kind === 'postcopy-running' && device.present !== undefined) run.urgent!.addBlocks(writeAbsentBlocks(device.present, first, count, write));
  else write(0, count);
}

function applyBatch(run: DestinationRun, state: DestState, frame: Frame): void {
  if (!acceptsPages(state) || run.applier === null) {
    throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `PAGE_BATCH while the destination is ${state.kind}`, { frameType: frame.type, phase: state.kind });
  }
  const applier = run.applier;
  applier.claim = claimsPages(state);
  const t = performance.now();
  const before = applier.totals.pages;
  applier.apply(frame.buf, frame.bodyOffset, frame.bodyLength, frame.checkedLength);
  run.passApplyMs += performance.now() - t;
  if (state.kind === 'postcopy-running') run.urgent?.addBulk(applier.totals.pages - before);
  run.progress(() => run.snapshot(state.kind));
}

/** The pass that ITERATION_END `iteration` closed, as this side received it. */
function recordReceivedPass(run: DestinationRun, iteration: number): void {
  const now = performance.now();
  const pages = run.applier?.totals.pages ?? 0;
  const bytes = run.bytesReceived;
  const start = run.passStart;
  run.record.receivedPasses.push({ iteration, pages: pages - start.pages, bytes: bytes - start.bytes, ms: now - start.at, applyMs: run.passApplyMs, endedAtMs: now - run.record.startedAt });
  run.passStart = { pages, bytes, at: now };
}

/** The target's check, with whatever it throws reported as invalid device state (never as a malformed frame). */
function checkDeviceState(run: DestinationRun, body: Uint8Array): void {
  try {
    run.target!.checkState(body);
  } catch (err) {
    if (isMemshiftError(err) && err.code === ErrorCode.DEVICE_STATE_INVALID) throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, `the target rejected the device state: ${message}`, { cause: err });
  }
}
