// Control frames a driver waits for (HELLO_ACK, RESUMED, POSTCOPY_DONE, …) on a channel whose frames
// arrive synchronously. Bodies are copied out of the receive buffer, queued, and handed to `expect`.
// An ERROR frame from the peer, a closed channel or the caller's AbortSignal rejects every waiter.
// The queue is bounded: the protocol never has more than one answer outstanding, so a peer that sends
// frames nobody asked for (a fake destination flooding 64 KiB frames) fails the channel instead of
// growing this process's memory.

import { ErrorCode, MemshiftError } from '../errors.js';
import { decodeError, peerError } from '../protocol/control.js';
import { FrameType } from '../protocol/constants.js';
import { frameTypeName } from '../protocol/frame.js';
import type { Frame } from '../protocol/frame-reader.js';
import type { FrameLink } from '../transport/channel.js';

export interface ControlFrame {
  type: number;
  body: Uint8Array;
}

/** Unasked-for frames held at once; one more fails the channel (the protocol needs one, a race two). */
export const MAX_QUEUED_FRAMES = 4;

export class Inbox {
  private readonly queue: ControlFrame[] = [];
  private waiter: { types: readonly number[]; resolve: (f: ControlFrame) => void; reject: (e: MemshiftError) => void } | null = null;
  private failure: MemshiftError | null = null;
  /** Called (synchronously, frame not copied) for frames no waiter asked for; otherwise they queue. */
  onOther: ((frame: Frame) => void) | null = null;
  /** Called once with the first failure (peer error, closed channel, cancel). */
  onFailure: ((err: MemshiftError) => void) | null = null;

  constructor(private readonly channel: FrameLink, signal?: AbortSignal) {
    channel.setHandlers({
      onFrame: (frame) => this.onFrame(frame),
      onClosed: (error) => this.fail(error ?? new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${channel.peer}: channel closed during ${channel.phase}`, { peer: channel.peer, phase: channel.phase })),
    });
    const onAbort = (): void => this.fail(new MemshiftError(ErrorCode.CANCELLED, `migration cancelled during ${channel.phase}`));
    signal?.addEventListener('abort', onAbort, { once: true });
    // A failed inbox lets go of the signal: a recovery opens one per attempt on the same signal.
    this.detach = () => signal?.removeEventListener('abort', onAbort);
  }

  private readonly detach: () => void;

  private onFrame(frame: Frame): void {
    if (frame.type === FrameType.ERROR) {
      const err = peerError(decodeError(frame.buf, frame.bodyOffset, frame.bodyLength), this.channel.peer);
      this.fail(err);
      // The peer has given up: stop sending to it now, so that every pending send fails with its reason.
      this.channel.destroy(err);
      return;
    }
    const w = this.waiter;
    if (w !== null && w.types.includes(frame.type)) {
      this.waiter = null;
      w.resolve({ type: frame.type, body: frame.buf.slice(frame.bodyOffset, frame.bodyOffset + frame.bodyLength) });
      return;
    }
    if (this.onOther !== null) {
      this.onOther(frame);
      return;
    }
    if (this.queue.length >= MAX_QUEUED_FRAMES) {
      const err = new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `${this.channel.peer}: sent ${MAX_QUEUED_FRAMES + 1} control frames nobody asked for (the last ${frameTypeName(frame.type)}) during ${this.channel.phase}`, { frameType: frame.type, peer: this.channel.peer, phase: this.channel.phase });
      this.fail(err);
      this.channel.fail(err);
      return;
    }
    this.queue.push({ type: frame.type, body: frame.buf.slice(frame.bodyOffset, frame.bodyOffset + frame.bodyLength) });
  }

  /** The first failure, if any (peer error, closed channel, cancel). */
  get error(): MemshiftError | null {
    return this.failure;
  }

  fail(err: MemshiftError): void {
    if (this.failure !== null) return;
    // A peer's ERROR frame explains the close that follows it: keep the first cause.
    this.failure = err;
    this.detach();
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
    this.onFailure?.(err);
  }

  /** Waits for the next frame of one of `types`; any other queued control frame is a protocol error. */
  expect(types: readonly number[], timeoutMs: number): Promise<ControlFrame> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const queued = this.queue.shift();
    if (queued !== undefined) {
      if (types.includes(queued.type)) return Promise.resolve(queued);
      return Promise.reject(this.unexpected(queued.type, types));
    }
    return new Promise<ControlFrame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new MemshiftError(ErrorCode.TIMEOUT, `${this.channel.peer}: no ${types.map(frameTypeName).join(' or ')} within ${timeoutMs} ms during ${this.channel.phase}`, { peer: this.channel.peer, phase: this.channel.phase }));
      }, timeoutMs);
      this.waiter = {
        types,
        resolve: (f) => { clearTimeout(timer); resolve(f); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
    });
  }

  private unexpected(type: number, wanted: readonly number[]): MemshiftError {
    return new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `${this.channel.peer}: got ${frameTypeName(type)} while waiting for ${wanted.map(frameTypeName).join(' or ')} during ${this.channel.phase}`, { frameType: type, peer: this.channel.peer, phase: this.channel.phase });
  }
}
