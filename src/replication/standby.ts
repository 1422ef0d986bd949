// The standby of a replicated guest: holds the primary's guest as of its last committed epoch, and
// runs it when the primary is gone.
//
//   HELLO(REPLICA) ─► target made ─► [DISKS: its local disks made] ─► base pages and blocks written
//            as they come ─► END(0)
//   epoch e: EPOCH_PAGES* and BLOCKS* kept aside, each page and block checked against its hash ─►
//            END(e): counts agree ─► applied whole, state kept ─► EPOCH_ACK(e)      (committed)
//   primary gone (link closed or failed, or silent for failoverTimeoutMs) ─► failover: the pages of an
//            epoch without its END are dropped, the last committed state loaded, the guest resumed
//   GOODBYE ─► the primary ended on purpose: no failover
//
// An epoch is never half applied: its pages reach guest memory only in one synchronous step after its
// END, so a link cut anywhere inside it leaves the previous epoch's memory and state exactly.

import type net from 'node:net';
import { ErrorCode, MemshiftError, toMemshiftError } from '../errors.js';
import type { BlockDevice, MemoryTarget, Region } from '../memory/types.js';
import { percentile } from '../migration/report.js';
import { ChannelRole, FrameType } from '../protocol/constants.js';
import { decodeError, peerError } from '../protocol/control.js';
import { frameTypeName, maxBodyBytes } from '../protocol/frame.js';
import type { Frame } from '../protocol/frame-reader.js';
import { decodeHello, encodeHelloAck } from '../protocol/handshake.js';
import { decodeEmpty, decodeEpochEnd, decodeEpochPages, encodeEpochAck, encodeHeartbeat } from '../protocol/replication.js';
import { Channel } from '../transport/channel.js';
import type { LinkSecurity } from '../transport/security.js';
import { StagedPages } from './staged-pages.js';
import { ReceivedBlocks } from './staged-blocks.js';
import { SilenceClock } from './silence.js';
import { decodeDisks } from '../protocol/blocks.js';

export interface StandbyOptions<T extends MemoryTarget> {
  /** A listening server; the first primary that completes the handshake is the one replicated. */
  listen: net.Server;
  security: LinkSecurity;
  /** Makes the (empty) guest for the primary's regions. */
  createTarget: (regions: readonly Region[]) => T;
  /** Nothing heard from the primary for this long after the first commit: fail over (default 1000 ms). */
  failoverTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  /** Most bytes of one epoch held before it is applied (default: the guest). */
  stagingBytes?: number;
  signal?: AbortSignal;
  onLog?: (line: string) => void;
  onCommit?: (epoch: number, steps: number) => void;
  /** Called just before the failover resumes the guest (after its state is loaded). */
  beforeResume?: (target: T) => void;
  /**
   * A guest on shared storage resumes only under its lease (MS_ERR_LEASE_HELD while the primary's is
   * still valid): how long the failover keeps trying, until the primary's lease is freed or expires
   * (default 30 s).
   */
  leaseWaitMs?: number;
}

export interface StandbyReport {
  role: 'standby';
  /** failover: the guest runs here; ended: the primary said goodbye; failed: nothing to run (or an error before the first commit). */
  outcome: 'failover' | 'ended' | 'failed';
  primary: string | null;
  epochsCommitted: number;
  /** The guest's steps in the last committed epoch: where a failover resumes it. */
  checkpointSteps: number;
  /** The guest's steps now (the checkpoint's, until something runs it). */
  guestSteps: number;
  basePages: number;
  pagesApplied: number;
  /** Pages of an epoch whose END never came, dropped at the failover. */
  tornPages: number;
  /** Disk blocks written (local disks): the base's, then the committed epochs'. */
  baseBlocks: number;
  blocksApplied: number;
  /** Disk blocks of the torn epoch, dropped. */
  tornBlocks: number;
  applyMs: { p50: number; max: number };
  bytesReceived: number;
  /** Why the primary was judged gone. */
  cause: string | null;
  /** From the last frame heard from the primary to the guest running here. */
  failoverMs: number | null;
  /** From the failover decision to the guest running. */
  resumeMs: number | null;
  /** Wall clock (ms since the epoch) when the guest started running here: another process's clock on this host compares with it. */
  resumedAtEpochMs: number | null;
  error: { code: string; message: string } | null;
}

const HEARTBEAT_MS = 50;

/**
 * Waits for a primary, holds its epochs, and fails over when it is gone. Resolves with the report and
 * the target (null when none was made): running after a failover, holding the last committed epoch
 * (paused, never run) after a goodbye.
 */
export async function standby<T extends MemoryTarget>(options: StandbyOptions<T>): Promise<{ report: StandbyReport; target: T | null }> {
  const failoverTimeoutMs = options.failoverTimeoutMs ?? 1000;
  const log = options.onLog ?? (() => undefined);
  let target: T | null = null;
  let regions: readonly Region[] = [];
  let staging: StagedPages | null = null;
  let committed: { epoch: number; steps: number; state: Uint8Array } | null = null;
  let baseDone = false;
  /** Local disks: the images the guest's were made as, and the blocks of the epoch under way. */
  let disks: { devices: readonly BlockDevice[]; received: ReceivedBlocks } | null = null;
  let baseBlocks = 0;
  let blocksApplied = 0;
  let basePages = 0;
  let pagesApplied = 0;
  let current = 0;
  /** The epoch whose frames come next: the base's (0) until its END, then the one after the last committed. */
  const due = (): number => (baseDone ? current + 1 : 0);
  const applyMs: number[] = [];
  const tickMs = Math.min(HEARTBEAT_MS, failoverTimeoutMs / 4);
  const silence = new SilenceClock(tickMs, failoverTimeoutMs);
  let lastSent = performance.now();
  let channel: Channel | null = null;
  let primary: string | null = null;

  const ended = new Promise<{ why: string; goodbye: boolean; error: MemshiftError | null }>((resolveEnd) => {
    let done = false;
    const end = (why: string, goodbye: boolean, error: MemshiftError | null): void => {
      if (done) return;
      done = true;
      clearInterval(watchdog);
      resolveEnd({ why, goodbye, error });
    };
    const watchdog = setInterval(() => {
      if (channel === null) return;
      const now = performance.now();
      const silent = silence.overLimit(now);
      if (silent !== null) {
        end(`nothing heard from ${primary} for ${Math.round(silent)} ms (limit ${failoverTimeoutMs})`, false, null);
        channel.destroy();
      } else if (now - lastSent >= HEARTBEAT_MS) {
        lastSent = now;
        channel.send(encodeHeartbeat()).catch(() => undefined);
      }
    }, tickMs);
    options.signal?.addEventListener('abort', () => end('cancelled', false, new MemshiftError(ErrorCode.CANCELLED, 'standby cancelled')), { once: true });

    const onFrame = (ch: Channel, frame: Frame): void => {
      silence.heard();
      switch (frame.type) {
        case FrameType.DISKS: {
          if (target === null || disks !== null || basePages > 0 || baseDone) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'DISKS after the base began, or twice');
          const shapes = decodeDisks(frame.buf, frame.bodyOffset, frame.bodyLength);
          const t = target as T;
          if (t.receiveBlockDevices === undefined) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'this standby\'s guest cannot take disks');
          disks = { devices: t.receiveBlockDevices(shapes), received: new ReceivedBlocks(shapes) };
          log(`the guest has ${shapes.length} disk(s), replicated with the epochs`);
          return;
        }
        case FrameType.BLOCKS: {
          if (disks === null) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'BLOCKS before DISKS');
          disks.received.accept(frame.buf, frame.bodyOffset, frame.bodyLength, frame.checkedLength, `epoch ${due()}`);
          // The base's blocks are written at once, as its pages are.
          if (!baseDone) baseBlocks += disks.received.applyTo(disks.devices);
          return;
        }
        case FrameType.EPOCH_PAGES: {
          if (target === null || staging === null) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'EPOCH_PAGES before HELLO');
          const m = decodeEpochPages(frame.buf, frame.bodyOffset, frame.bodyLength, frame.checkedLength, regions);
          if (m.epoch !== due()) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `pages of epoch ${m.epoch} while epoch ${due()} is due`);
          staging.acceptFrame(frame.buf, m, target, `epoch ${m.epoch}`);
          // The base is no checkpoint yet (nothing may run it before epoch 1 commits): written at once.
          // An epoch's pages stay staged until its END.
          if (m.epoch === 0) {
            basePages += staging.applyTo(target);
            staging.clear();
          }
          return;
        }
        case FrameType.EPOCH_END: {
          if (target === null || staging === null) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'EPOCH_END before HELLO');
          const m = decodeEpochEnd(frame.buf, frame.bodyOffset, frame.bodyLength);
          if (m.epoch !== due()) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `END of epoch ${m.epoch} while epoch ${due()} is due`);
          const got = m.epoch === 0 ? basePages : staging.count;
          if (m.pages !== got) throw new MemshiftError(ErrorCode.FRAME_MALFORMED, `epoch ${m.epoch} ends with ${m.pages} pages; ${got} arrived`, { frameType: frame.type });
          const gotBlocks = m.epoch === 0 ? baseBlocks : (disks?.received.count ?? 0);
          if (m.blocks !== gotBlocks) throw new MemshiftError(ErrorCode.FRAME_MALFORMED, `epoch ${m.epoch} ends with ${m.blocks} disk blocks; ${gotBlocks} arrived`, { frameType: frame.type });
          if (m.epoch === 0) {
            baseDone = true;
            ch.phase = 'epoch 1';
            log(`base copy: ${basePages} pages`);
            return;
          }
          // Checked before a byte of the epoch touches the guest: a state this guest cannot load is refused whole.
          target.checkState(m.state);
          const t = performance.now();
          pagesApplied += staging.applyTo(target);
          if (disks !== null) blocksApplied += disks.received.applyTo(disks.devices);
          applyMs.push(performance.now() - t);
          staging.clear();
          current = m.epoch;
          ch.phase = `epoch ${current + 1}`;
          committed = { epoch: m.epoch, steps: m.steps, state: m.state };
          lastSent = performance.now();
          void ch.send(encodeEpochAck(m.epoch)).catch(() => undefined);
          options.onCommit?.(m.epoch, m.steps);
          return;
        }
        case FrameType.HEARTBEAT:
          decodeEmpty('HEARTBEAT', frame.type, frame.bodyLength);
          return;
        case FrameType.GOODBYE:
          decodeEmpty('GOODBYE', frame.type, frame.bodyLength);
          end('the primary ended replication', true, null);
          void ch.close();
          return;
        case FrameType.ERROR:
          throw peerError(decodeError(frame.buf, frame.bodyOffset, frame.bodyLength), primary ?? 'primary');
        default:
          throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `${primary} sent ${frameTypeName(frame.type)}`, { frameType: frame.type });
      }
    };

    /** A connection's first frame: a REPLICA HELLO makes it the primary (the first one only); anything else is turned away, and the wait goes on. */
    const adopt = (ch: Channel, from: string, frame: Frame): void => {
      if (frame.type !== FrameType.HELLO) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `expected HELLO, got ${frameTypeName(frame.type)}`, { frameType: frame.type });
      const hello = decodeHello(frame.buf, frame.bodyOffset, frame.bodyLength);
      if (hello.role !== ChannelRole.REPLICA) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'this is a standby: it takes replication from `memshift replicate`, not a migration');
      if (channel !== null || done) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'this standby already has its primary');
      const pageSize = hello.regions[0].pageSize;
      if (hello.regions.some((r) => r.pageSize !== pageSize)) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'replication needs one page size across the guest\'s regions');
      regions = hello.regions;
      target = options.createTarget(hello.regions);
      const guestBytes = regions.reduce((n, r) => n + r.pageCount * r.pageSize, 0);
      staging = new StagedPages(pageSize, Math.min(options.stagingBytes ?? guestBytes, guestBytes));
      channel = ch;
      ch.phase = 'base copy';
      primary = from;
      lastSent = performance.now();
      silence.heard(lastSent);
      void ch.send(encodeHelloAck({ session: hello.session, capabilities: 0, urgentPort: 0 })).catch(() => undefined);
      log(`replicating the guest of ${primary} (${regions.length} region(s), ${guestBytes} bytes)`);
    };

    options.listen.on('connection', (socket: net.Socket) => {
      const from = `primary ${socket.remoteAddress}:${socket.remotePort}`;
      if (channel !== null || done) {
        // One primary per standby: a later connection is turned away before it is read.
        log(`refused ${from}: this standby already has its primary`);
        socket.destroy();
        return;
      }
      const handshakeMs = options.handshakeTimeoutMs ?? 10_000;
      Channel.acceptWith(socket, { security: options.security, timeoutMs: handshakeMs, maxBody: maxBodyBytes(FrameType.EPOCH_PAGES), peer: from })
        .then((ch) => {
          let mine = false;
          const silent = setTimeout(() => ch.destroy(new MemshiftError(ErrorCode.TIMEOUT, `${from} sent no HELLO within ${handshakeMs} ms`)), handshakeMs);
          ch.setHandlers({
            onFrame: (frame) => {
              try {
                if (!mine) {
                  clearTimeout(silent);
                  adopt(ch, from, frame);
                  mine = true;
                  return;
                }
                onFrame(ch, frame);
              } catch (err) {
                const e = toMemshiftError(err, ErrorCode.UNEXPECTED_MESSAGE, from);
                log(`${mine ? '' : 'refused '}${from}: ${e.code}: ${e.message}`);
                ch.fail(e);
                if (mine) end(`the link to ${from} failed: ${e.message}`, false, e);
              }
            },
            onClosed: (error) => {
              clearTimeout(silent);
              if (mine) end(error === null ? `${from} closed the link` : `the link to ${from} failed: ${error.message}`, false, null);
            },
          });
        })
        .catch((err: unknown) => log(`refused ${from}: ${(err as Error).message}`));
    });
  });

  const { why, goodbye, error } = await ended;
  const decidedAt = performance.now();
  // The epoch under way, which never got its END: dropped whole.
  const tornPages = goodbye ? 0 : ((staging as StagedPages | null)?.count ?? 0);
  const report = (outcome: StandbyReport['outcome'], e: MemshiftError | null, failoverMs: number | null = null, resumeMs: number | null = null, resumedAtEpochMs: number | null = null): StandbyReport => ({
    role: 'standby', outcome, primary, epochsCommitted: committed?.epoch ?? 0, checkpointSteps: committed?.steps ?? 0, guestSteps: committed?.steps ?? 0, basePages, pagesApplied,
    tornPages, baseBlocks, blocksApplied, tornBlocks: goodbye ? 0 : ((disks as { received: ReceivedBlocks } | null)?.received.count ?? 0), applyMs: { p50: percentile(applyMs, 50), max: Math.max(0, ...applyMs) },
    bytesReceived: (channel as Channel | null)?.bytesReceived ?? 0, cause: why, failoverMs, resumeMs, resumedAtEpochMs,
    error: e === null ? null : { code: e.code, message: e.message },
  });
  staging = null;
  // (Assigned in callbacks: the compiler cannot see it.)
  const c = committed as { epoch: number; steps: number; state: Uint8Array } | null;
  const t = target as T | null;
  if (goodbye) {
    log(`${why}: holding epoch ${c?.epoch ?? 0} (step ${c?.steps ?? 0}), not failing over`);
    if (c !== null && t !== null) t.loadState(c.state);
    return { report: report('ended', null), target: t };
  }
  if (error?.code === ErrorCode.CANCELLED) return { report: report('failed', error), target: t };
  if (c === null || t === null) {
    const e = new MemshiftError(ErrorCode.NO_CHECKPOINT, `${why}, before any epoch was committed: nothing to fail over to`);
    return { report: report('failed', e), target: t };
  }
  log(`failover: ${why}; resuming epoch ${c.epoch} (step ${c.steps})${tornPages > 0 ? `, dropping ${tornPages} pages of the torn epoch ${current + 1}` : ''}`);
  t.loadState(c.state);
  options.beforeResume?.(t);
  const leaseUntil = performance.now() + (options.leaseWaitMs ?? 30_000);
  for (let waited = false; ; waited = true) {
    try {
      await t.resume();
      break;
    } catch (err) {
      if ((err as MemshiftError).code !== ErrorCode.LEASE_HELD || performance.now() > leaseUntil) {
        const e = toMemshiftError(err, ErrorCode.UNEXPECTED_MESSAGE, 'failover');
        log(`failover: cannot run the guest: ${e.message}`);
        return { report: report('failed', e), target: t };
      }
      if (!waited) log(`failover: waiting for the primary's lease to be freed or to expire (${(err as Error).message})`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  const resumedAt = performance.now();
  return { report: report('failover', null, resumedAt - silence.lastHeardAt, resumedAt - decidedAt, performance.timeOrigin + resumedAt), target: t };
}

