// The source's setup phase: connect (or adopt the caller's socket), HELLO / HELLO_ACK, and everything
// the passes need once the destination agreed: the encoder pool, the page sender and, when post-copy
// was negotiated, the fault thread connected to the destination's urgent port. Cold pauses the guest
// before connecting, so its one pass starts from memory that no longer changes.
//
//   [cold: pause] ─► connect (+ TLS, peer verified) ─► HELLO ─► HELLO_ACK (same session, common capabilities)
//   ─► [post-copy: fault thread connects the urgent channel] ─► pool, sender ─► handshake-done

import { Compression } from '../../compression.js';
import { sampleLz4 } from '../lz4-sample.js';
import { sampleXbzrle } from '../xbzrle-sample.js';
import { hostCpuTimes } from '../../host-cpu.js';
import { randomBytes } from 'node:crypto';
import { ErrorCode, MemshiftError } from '../../../errors.js';
import { EncoderPool, defaultEncoderCount } from '../../../pipeline/pool.js';
import { Capability, ChannelRole, FrameType, Limits } from '../../../protocol/constants.js';
import { decodeHelloAck, encodeHello } from '../../../protocol/handshake.js';
import { Channel } from '../../../transport/channel.js';
import { RateLimiter } from '../../../transport/rate-limit.js';
import { Inbox } from '../../inbox.js';
import { stepRate } from '../../report.js';
import type { SourceEvent } from '../machine.js';
import { PageSender } from '../../../pipeline/page-sender.js';
import { encodeDisks } from '../../../protocol/blocks.js';
import { BlockSender } from '../block-sender.js';
import { UrgentConnector } from '../urgent-connector.js';
import { DEFAULT_STALL_TIMEOUT_MS, type SourceRun } from '../run.js';

export async function runHandshake(run: SourceRun): Promise<SourceEvent> {
  const { options, source, peer } = run;
  if (options.mode === 'cold') await run.pause();
  run.checkCancel('setup');
  // Encoder threads load their modules and compile the kernels while the link is being set up, not at
  // the first task of pass 1 (that cost ~70 ms of a 256 MiB guest's first pass); prepared ones already have.
  const wantsPostcopy = options.mode === 'postcopy' || options.mode === 'hybrid' || options.policy.onStall === 'postcopy';
  const pool = (run.pool = options.prepared !== undefined ? options.prepared.take(run.slabs) : new EncoderPool(run.slabs, options.encoders ?? defaultEncoderCount(wantsPostcopy)));
  // Likewise the fault thread, when post-copy may come: it connects once HELLO_ACK names the port.
  const urgent = wantsPostcopy ? UrgentConnector.spawn(run.slabs, source.regions, 0, options.security, options.prepared?.takeFaultThread() ?? undefined) : null;
  run.urgent = urgent;
  const channelOptions = { maxBody: Limits.MAX_CONTROL_BODY_BYTES, peer, security: options.security, timeoutMs: options.connectTimeoutMs, signal: options.signal };
  const channel = options.link !== undefined ? options.link : options.socket !== undefined
    ? await Channel.over(options.socket, channelOptions)
    : await Channel.connect(options.address, channelOptions);
  run.channel = channel;
  run.watchStalls(channel, options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS);
  const inbox = (run.inbox = new Inbox(channel, options.signal));
  const session = new Uint8Array(randomBytes(Limits.SESSION_ID_BYTES));
  run.record.session = session;
  run.record.guestBytes = source.regions.reduce((n, r) => n + r.pageCount * r.pageSize, 0);
  const ours = (options.xbzrle !== 'off' ? Capability.XBZRLE : 0) | (options.compress !== 'none' ? Capability.LZ4 : 0) | (wantsPostcopy ? Capability.POSTCOPY : 0) |
    (source.unwrittenPagesAreZero === true ? Capability.UNWRITTEN_ZERO : 0) | (source.storage != null ? Capability.SHARED_STORAGE : 0) |
    ((source.blockDevices?.length ?? 0) > 0 ? Capability.BLOCKS | Capability.BLOCK_RECOVERY | Capability.ZERO_BLOCKS | (wantsPostcopy ? Capability.POSTCOPY_BLOCKS : 0) : 0);
  await channel.send(encodeHello({ session, role: ChannelRole.BULK, mode: options.mode, capabilities: ours, regions: [...source.regions] }));
  const ackFrame = await inbox.expect([FrameType.HELLO_ACK], options.answerTimeoutMs);
  const ack = decodeHelloAck(ackFrame.body, 0, ackFrame.body.length);
  if (Buffer.compare(ack.session, session) !== 0) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `${peer} acknowledged another session`);
  const capabilities = ack.capabilities & ours;
  const postcopy = (capabilities & Capability.POSTCOPY) !== 0 && ack.urgentPort !== 0;
  if (wantsPostcopy && !postcopy) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `${peer} cannot receive a post-copy migration`);
  if (source.storage != null && (capabilities & Capability.SHARED_STORAGE) === 0) {
    throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `${peer} does not reach the guest's shared storage (start it with --storage shared --disk-dir DIR)`);
  }
  const devices = source.blockDevices ?? [];
  if (devices.length > 0 && (capabilities & Capability.BLOCKS) === 0) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `${peer} cannot receive the guest's disks`);
  // The disks are named before any pass, so that their blocks can be written as they arrive.
  if (devices.length > 0) await channel.send(encodeDisks(devices.map((d) => ({ blockBytes: d.blockBytes, blocks: d.blocks }))));
  if (urgent !== null) await urgent.connect(session, { host: options.address.host, port: ack.urgentPort }, channel.peerIdentity);
  await pool.ready();
  const setupEnd = performance.now();
  run.record.setupTimeMs = setupEnd - run.record.startedAt;
  run.record.stepRateBefore = stepRate(run.stepsAtStart, run.record.startedAt, source.steps, setupEnd);
  // LZ4 only where both ends have it; under auto, judged by a sample of this guest (lz4-sample.ts).
  const mode = (capabilities & Capability.LZ4) !== 0 ? options.compress : 'none';
  const deltas = (capabilities & Capability.XBZRLE) !== 0 ? options.xbzrle : 'off';
  // Samples taken when the encoders were prepared stand if recent; otherwise they are taken now.
  const l4 = mode === 'auto' ? (options.prepared?.freshSample('lz4') ?? sampleLz4(run.slabs, pool.size, pool.inline)) : null;
  const xs = deltas === 'auto' ? (options.prepared?.freshSample('xbzrle') ?? sampleXbzrle(run.slabs)) : null;
  run.compression = new Compression(mode, l4, { mode: deltas, sample: xs }, options.maxBandwidth ?? Number.POSITIVE_INFINITY, deltas === 'auto' ? hostCpuTimes : null);
  run.limiter = options.maxBandwidth === null ? null : new RateLimiter(options.maxBandwidth);
  const sender = new PageSender(run.slabs, pool, channel, { lz4: () => run.compression.lz4, limiter: run.limiter });
  run.link = { session, capabilities, offered: ours, sender, blocks: devices.length > 0 ? new BlockSender(devices) : null };
  return { type: 'handshake-done', mode: options.mode, postcopy };
}
