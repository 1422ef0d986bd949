// Waiting for a migration on the destination: accepts connections, runs TLS on each (unless the
// destination is insecure by choice), checks its preface and HELLO on a small buffer, and hands the
// first acceptable one to a Session (driver.ts). A connection that fails the handshake (TLS
// authentication, not memshift, wrong version, a guest this host cannot hold, a guest the
// integrator's createTarget refuses) is logged and dropped, and the wait goes on; one that arrives
// during a session is turned away, except while the session lingers after losing its link past
// SWITCHOVER: then a QUERY HELLO for that session, from the same TLS peer, is handed to it, and any
// other HELLO is refused; likewise, while post-copy runs or recovers with recovery on, a RECOVER HELLO
// for that session from the same TLS peer becomes its new bulk link. Once a session got past setup, its end ends the wait. One timeout
// covers TLS and HELLO: a peer that authenticates must still say HELLO within it. Connections still in
// that handshake are capped, in all and per address (admission.ts).
//
//   connection ─► admitted? ─► TLS handshake + peer verified ─► preface ─► HELLO ─► Session (allocates the guest)
//                                                                               ├─ QUERY ─► the lingering Session answers it
//                                                                               └─ RECOVER ─► the post-copy Session takes it over
//        └─ over the caps, or fails: logged, destroyed, nothing written, nothing allocated; the wait goes on

import type net from 'node:net';
import { freemem } from 'node:os';
import { ErrorCode, MemshiftError, toMemshiftError } from '../../errors.js';
import type { Region } from '../../memory/types.js';
import { ChannelRole, FrameType, Limits } from '../../protocol/constants.js';
import { decodeHello } from '../../protocol/handshake.js';
import { frameTypeName } from '../../protocol/frame.js';
import { Channel } from '../../transport/channel.js';
import { assembleReport, startRecord } from '../report.js';
import { Admission } from './admission.js';
import type { LogLevel } from './run.js';
import { Session, type DestinationOptions, type DestinationResult, type SessionEnd } from './driver.js';

/** Waits on `server` for one migration and receives it. Always resolves with a report. */
export function receiveMigration(server: net.Server, options: DestinationOptions): Promise<DestinationResult> {
  const log = (line: string, level: LogLevel = 'info'): void => options.onLog?.(line, level);
  const admission = new Admission(options.admission);
  return new Promise<DestinationResult>((resolve) => {
    let session: Session | null = null;
    const finish = (result: DestinationResult): void => {
      server.off('connection', onConnection);
      resolve(result);
    };
    const onConnection = (socket: net.Socket): void => {
      const peer = `source ${socket.remoteAddress}:${socket.remotePort}`;
      if (session !== null && !session.lingering && !session.recoverable) {
        log(`rejected connection from ${peer}: a migration is already in progress`, 'notice');
        socket.destroy();
        return;
      }
      const place = admission.admit(socket.remoteAddress ?? '?');
      if ('refused' in place) {
        log(`rejected connection from ${peer}: ${ErrorCode.CONNECTION_LIMIT}: ${place.refused}`, 'notice');
        socket.destroy();
        return;
      }
      const startedAt = performance.now();
      Channel.acceptWith(socket, { maxBody: Limits.MAX_CONTROL_BODY_BYTES, peer, security: options.security, timeoutMs: options.handshakeTimeoutMs }).then(
        (channel) => {
          // A session may have begun while this one was in its TLS handshake: HELLO turns it away.
          const left = Math.max(0, options.handshakeTimeoutMs - (performance.now() - startedAt));
          awaitHello(channel, peer, left, place.release);
        },
        (err: unknown) => {
          place.release();
          const error = toMemshiftError(err, ErrorCode.AUTH_FAILED, peer);
          log(`rejected connection from ${peer}: ${error.code}: ${error.message}`, 'notice');
        },
      );
    };
    const awaitHello = (channel: Channel, peer: string, timeoutMs: number, release: () => void): void => {
      const timer = setTimeout(() => channel.fail(new MemshiftError(ErrorCode.TIMEOUT, `${peer}: no HELLO within ${options.handshakeTimeoutMs} ms`)), timeoutMs);
      let settled = false;
      let mine = false;
      channel.setHandlers({
        onFrame: (frame) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          release();
          if (frame.type !== FrameType.HELLO) {
            throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `expected HELLO, got ${frameTypeName(frame.type)}`, { frameType: frame.type });
          }
          const hello = decodeHello(frame.buf, frame.bodyOffset, frame.bodyLength);
          if (hello.role === ChannelRole.QUERY) {
            // Only the session's own source (same id, same TLS identity) may learn how it ended.
            if (session === null || !session.answersQuery(hello.session, channel.peerIdentity)) {
              throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `no session ${Buffer.from(hello.session).toString('hex')} answers queries from this peer`);
            }
            mine = true;
            log(`answering a query from ${peer} about session ${Buffer.from(hello.session).toString('hex')}`);
            session.answerQuery(channel);
            return;
          }
          if (hello.role === ChannelRole.RECOVER) {
            // Only the session's own source (same id, same TLS identity) may take over its post-copy.
            if (session === null || !session.answersRecover(hello.session, channel.peerIdentity)) {
              throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `no session ${Buffer.from(hello.session).toString('hex')} recovers post-copy for this peer`);
            }
            mine = true;
            session.recover(channel);
            return;
          }
          if (hello.role === ChannelRole.REPLICA) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'this is a migration destination, not a standby: replication needs `memshift standby`');
          if (hello.role !== ChannelRole.BULK) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `no session ${Buffer.from(hello.session).toString('hex')} to attach a ${hello.role === ChannelRole.URGENT ? 'urgent' : 'bulk'} channel to`);
          // One migration at a time is decided here, at HELLO: a connection opened earlier must not start a second.
          if (session !== null) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'a migration is already in progress on this destination');
          checkRegions(hello.regions, options.maxGuestBytes ?? defaultMaxGuestBytes(), options.maxRegions ?? DEFAULT_MAX_REGIONS);
          mine = true;
          session = new Session(channel, hello, options, (end: SessionEnd) => {
            if (end.accepted || options.signal?.aborted) {
              finish(end.result);
              return;
            }
            log(`rejected migration from ${peer}: ${end.result.report.error?.code}: ${end.result.report.error?.message}`, 'notice');
            session = null;
          });
        },
        onClosed: (error) => {
          clearTimeout(timer);
          release();
          if (!mine && error !== null) log(`rejected connection from ${peer}: ${error.code}: ${error.message}`, 'notice');
        },
      });
    };
    server.on('connection', onConnection);
    options.signal?.addEventListener('abort', () => {
      if (session === null) {
        const cancelled = new MemshiftError(ErrorCode.CANCELLED, 'cancelled while waiting for a migration');
        finish({ report: assembleReport(startRecord('destination', 'live'), { outcome: 'cancelled', error: cancelled }), target: null });
      }
      else session.cancel();
    }, { once: true });
  });
}

/**
 * The largest guest accepted when the caller set no cap: three quarters of the memory available now
 * (not all of it, and not the machine's total: a HELLO must not be able to push this host into
 * swapping or the OOM killer by asking for more than it has to spare).
 */
export function defaultMaxGuestBytes(): number {
  return Math.floor(0.75 * freemem());
}

/**
 * Regions accepted in one guest when the caller set no cap. Each region is at least one shared
 * WebAssembly memory, and V8 reserves about 10 GiB of address space per memory whatever its size (its
 * bounds checks are guard pages): 64 one-page regions reserved 683 GB here. Real guests have a few.
 */
export const DEFAULT_MAX_REGIONS = 16;

function checkRegions(regions: readonly Region[], maxBytes: number, maxRegions: number): void {
  if (regions.length > maxRegions) {
    throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `guest of ${regions.length} regions has more than this destination accepts (${maxRegions}): each region reserves about 10 GiB of address space`);
  }
  const total = regions.reduce((n, r) => n + r.pageCount * r.pageSize, 0);
  if (total > maxBytes) {
    throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `guest of ${total} bytes is larger than this destination accepts (${maxBytes})`);
  }
}
