// Two ends of an in-memory framed link (the FrameLink the drivers run on), so both drivers can be
// driven without sockets. Bytes cross on the next turn of the event loop and are parsed by the real
// FrameReader on the receiving end, into its current receive buffer (the destination switches it into
// guest memory, as over TCP). A tap sees every frame in flight and may drop it and cut the link there.

import { ErrorCode, MemshiftError } from '../../src/errors.js';
import { encodeError } from '../../src/protocol/control.js';
import { FrameReader, receiveBufferBytes } from '../../src/protocol/frame-reader.js';
import { readFrameHeader } from '../../src/protocol/frame.js';
import { Limits } from '../../src/protocol/constants.js';
import type { ChannelHandlers, FrameLink } from '../../src/transport/channel.js';

/** Decides, per frame about to be delivered, whether it arrives or the link is cut instead. */
export type Tap = (frameType: number, from: 'a' | 'b') => 'deliver' | 'cut';

class MemoryLink implements FrameLink {
  phase = 'handshake';
  bytesReceived = 0;
  /** Delivered on the next turn: nothing stays queued here. */
  readonly queuedBytes = 0;
  flushedBytes = 0;
  readonly localHost = '127.0.0.1';
  readonly peerIdentity = null;
  other!: MemoryLink;
  /** Frame types this end received, in order. */
  readonly received: number[] = [];
  private reader = new FrameReader(new Uint8Array(receiveBufferBytes(Limits.MAX_CONTROL_BODY_BYTES)), Limits.MAX_CONTROL_BODY_BYTES);
  private handlers: ChannelHandlers | null = null;
  private closed = false;
  private inbox: Uint8Array[] = [];

  constructor(readonly peer: string, readonly side: 'a' | 'b', private readonly tap: Tap) {}

  get isClosed(): boolean {
    return this.closed;
  }

  setHandlers(handlers: ChannelHandlers): void {
    this.handlers = handlers;
    const queued = this.inbox;
    this.inbox = [];
    for (const bytes of queued) this.deliver(bytes);
  }

  send(bytes: Uint8Array): Promise<void> {
    return this.sendSegments([bytes]);
  }

  sendSegments(segments: readonly Uint8Array[]): Promise<void> {
    if (this.closed) return Promise.reject(new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${this.peer}: link closed during ${this.phase}`));
    const bytes = Buffer.concat(segments.map((s) => Buffer.from(s)));
    this.flushedBytes += bytes.length;
    return new Promise((resolve) => setImmediate(() => {
      const h = readFrameHeader(bytes, 0, bytes.length);
      if (h !== null && this.tap(h.type, this.side) === 'cut') {
        this.cut();
      } else if (!this.other.closed) {
        this.other.deliver(bytes);
      }
      resolve();
    }));
  }

  private deliver(bytes: Uint8Array): void {
    if (this.handlers === null) {
      this.inbox.push(bytes);
      return;
    }
    this.bytesReceived += bytes.length;
    try {
      this.reader.push(bytes, () => {
        for (let f = this.reader.next(); f !== null && !this.closed; f = this.reader.next()) {
          this.received.push(f.type);
          this.handlers!.onFrame(f);
        }
      });
    } catch (err) {
      this.fail(err as MemshiftError);
    }
  }

  switchReceiveBuffer(buf: Uint8Array, maxBody: number): void {
    const leftover = this.reader.peek();
    const next = new FrameReader(buf, maxBody);
    if (leftover.length > 0) next.push(leftover, () => undefined);
    this.reader = next;
  }

  fail(err: MemshiftError): void {
    if (this.closed) return;
    const frame = encodeError({ code: err.code, message: err.message });
    const other = this.other;
    setImmediate(() => {
      if (!other.closed) other.deliver(frame);
      other.end(new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${other.peer}: link closed after an error`));
    });
    this.end(err);
  }

  close(): Promise<void> {
    const other = this.other;
    setImmediate(() => other.end(new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${other.peer} closed the link during ${other.phase}`)));
    this.end(null);
    return Promise.resolve();
  }

  destroy(err?: MemshiftError): void {
    this.cut(err);
  }

  /** Both ends lose the link now. */
  cut(err?: MemshiftError): void {
    this.end(err ?? new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${this.peer}: link cut during ${this.phase}`));
    this.other.end(new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${this.other.peer}: link cut during ${this.other.phase}`));
  }

  private end(error: MemshiftError | null): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers?.onClosed(error);
  }
}

/** A linked pair: `a` is the source's end, `b` the destination's. */
export function linkPair(tap: Tap = () => 'deliver'): { a: MemoryLink; b: MemoryLink } {
  const a = new MemoryLink('destination (memory link)', 'a', tap);
  const b = new MemoryLink('source (memory link)', 'b', tap);
  a.other = b;
  b.other = a;
  return { a, b };
}
