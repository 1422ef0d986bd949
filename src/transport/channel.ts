// A framed, duplex connection: socket + FrameReader + ordered writes. Both ends send the 12-byte
// preface first; the first bytes from the peer must be its preface (checked as they arrive, so an
// HTTP client or port scanner is turned away after its first packet). With TLS (tls.ts), the channel
// exists only once the handshake is done and the peer authenticated: the preface and every frame go
// over the TLS stream, and nothing a peer sent before that is ever parsed.
//
// Receiving is synchronous: each read is parsed at once and every whole frame goes to `onFrame`
// before the next read may reuse the buffer. A frame's bytes must not be kept after `onFrame`
// returns (copy a control body to keep it). A throw from `onFrame` fails the channel.
//
// Sending: `send` and `sendSegments` queue bytes and resolve when the socket has taken them; the
// caller bounds what is in flight (the pipeline owns a fixed number of arena chunks), so there is no
// unbounded queue here. A failure names the peer and the phase it happened in.

import type net from 'node:net';
import { ErrorCode, MemshiftError, toMemshiftError } from '../errors.js';
import { FrameReader, receiveBufferBytes, type Frame } from '../protocol/frame-reader.js';
import { decodePreface, encodePreface } from '../protocol/handshake.js';
import { PREFACE_BYTES } from '../protocol/constants.js';
import { encodeError } from '../protocol/control.js';
import { connect, formatAddress, readInto, type Address, type ConnectOptions, type ReadSink } from './tcp.js';
import type { LinkSecurity } from './security.js';
import { refusedAfterHandshake, secureAccept, secureConnect, secureOver, tlsFailure } from './tls.js';

type Secured = Exclude<LinkSecurity, { kind: 'insecure' }>;

export interface ChannelHandlers {
  onFrame(frame: Frame): void;
  /** The channel ended: `error` is null after our own close(), else why it failed. Called once. */
  onClosed(error: MemshiftError | null): void;
}

export interface ChannelOptions {
  /** Receive buffer (a view into guest memory on the destination's bulk channel); by default one sized for `maxBody`. */
  receiveBuffer?: Uint8Array;
  /** Largest frame body accepted on this channel. */
  maxBody: number;
  /** Peer name for messages ("destination 127.0.0.1:7000"). */
  peer: string;
}

/**
 * What the migration layers use of a channel: framed sends, a frame handler, and the ways it ends.
 * `Channel` is the TCP one; tests drive the drivers over an in-memory pair of these.
 */
export interface FrameLink {
  readonly peer: string;
  /** Where the migration is, for error messages. */
  phase: string;
  readonly bytesReceived: number;
  /** Bytes queued and not yet taken by the kernel, and bytes it has taken (stall detection). */
  readonly queuedBytes: number;
  readonly flushedBytes: number;
  /** The local address (where a second listener on this host is reachable). */
  readonly localHost: string;
  /** Who the peer proved to be over TLS (certificate fingerprint or PSK identity); null in plaintext. */
  readonly peerIdentity: string | null;
  readonly isClosed: boolean;
  setHandlers(handlers: ChannelHandlers): void;
  send(bytes: Uint8Array): Promise<void>;
  sendSegments(segments: readonly Uint8Array[]): Promise<void>;
  switchReceiveBuffer(buf: Uint8Array, maxBody: number): void;
  fail(err: MemshiftError): void;
  close(): Promise<void>;
  destroy(err?: MemshiftError): void;
}

/**
 * How long a failed channel keeps reading (and dropping) before it resets the connection: a peer that
 * is reading closes long before (it reads our ERROR frame first); one that was starved of CPU meanwhile
 * and writes before it reads meets the reset only after this, and reports a broken pipe, not our reason.
 */
const FAIL_LINGER_MS = 5000;

export class Channel implements FrameLink {
  readonly peer: string;
  /** Where the migration is, for error messages ("pre-copy iteration 3"). */
  phase = 'handshake';
  bytesSent = 0;
  bytesReceived = 0;
  peerVersion: number | null = null;
  private reader: FrameReader;
  /**
   * The buffer the socket was last given to read into. Node asks for the next read's buffer right after
   * a read, so a read can land in the buffer of a reader that switchReceiveBuffer has since replaced.
   */
  private handed: { reader: FrameReader; view: Uint8Array } | null = null;
  private socket!: net.Socket;
  private handlers: ChannelHandlers | null = null;
  private closed = false;
  private closing = false;
  private failure: MemshiftError | null = null;
  /** The TLS this channel runs over (null: plaintext), and which end of the handshake we were. */
  private secured: { security: Secured; side: 'client' | 'server' } | null = null;
  /** Who the peer proved to be over TLS (certificate fingerprint or PSK identity); null in plaintext. */
  peerIdentity: string | null = null;

  private constructor(options: ChannelOptions) {
    this.peer = options.peer;
    this.reader = new FrameReader(options.receiveBuffer ?? new Uint8Array(receiveBufferBytes(options.maxBody)), options.maxBody);
  }

  private sink(): ReadSink {
    return {
      buffer: () => {
        const view = this.reader.writable();
        this.handed = { reader: this.reader, view };
        return view;
      },
      onRead: (n) => this.onRead(n),
    };
  }

  /** Connects (over TLS unless `security` is insecure); resolves once the peer is verified. */
  static async connect(address: Address, options: Omit<ChannelOptions, 'peer'> & { peer?: string; security: LinkSecurity } & ConnectOptions): Promise<Channel> {
    const ch = new Channel({ ...options, peer: options.peer ?? `destination ${formatAddress(address)}` });
    const sec = options.security;
    if (sec.kind === 'insecure') ch.socket = await connect(address, ch.sink(), options);
    else ch.secure(await secureConnect(address, ch.sink(), sec, ch.peer, options), sec, 'client');
    ch.attach();
    return ch;
  }

  /** The connecting end over a socket the caller opened (TLS client over it unless insecure). */
  static async over(socket: net.Socket, options: ChannelOptions & { security: LinkSecurity } & ConnectOptions): Promise<Channel> {
    const sec = options.security;
    if (sec.kind === 'insecure') return Channel.accept(socket, options);
    const ch = new Channel(options);
    ch.secure(await secureOver(socket, ch.sink(), sec, ch.peer, options), sec, 'client');
    ch.attach();
    return ch;
  }

  /**
   * The accepting end: with TLS, resolves once the handshake is done and the peer authorized, and
   * rejects (MS_ERR_AUTH_FAILED, or MS_ERR_TIMEOUT after `timeoutMs`) with the socket destroyed and
   * nothing written to it otherwise.
   */
  static async acceptWith(accepted: net.Socket, options: ChannelOptions & { security: LinkSecurity; timeoutMs: number }): Promise<Channel> {
    const sec = options.security;
    if (sec.kind === 'insecure') return Channel.accept(accepted, options);
    const ch = new Channel(options);
    ch.secure(await secureAccept(accepted, ch.sink(), sec, ch.peer, options.timeoutMs), sec, 'server');
    ch.attach();
    return ch;
  }

  private secure(link: { socket: net.Socket; peerIdentity: string }, security: Secured, side: 'client' | 'server'): void {
    this.socket = link.socket;
    this.peerIdentity = link.peerIdentity;
    this.secured = { security, side };
  }

  /** Adopts a connected socket (an accepted one, or one the caller opened) and reads it without copies. */
  static accept(accepted: net.Socket, options: ChannelOptions): Channel {
    const ch = new Channel(options);
    ch.socket = readInto(accepted, ch.sink());
    ch.attach();
    return ch;
  }

  private attach(): void {
    this.socket.on('error', (err) => this.finish(this.failure ?? this.linkError(err.message, err)));
    this.socket.on('close', () => this.finish(this.closing ? null : (this.failure ?? this.linkError('connection closed'))));
    this.socket.write(encodePreface());
  }

  /** Sets who receives frames. Frames that arrived before this call are delivered now. */
  setHandlers(handlers: ChannelHandlers): void {
    this.handlers = handlers;
    this.drainFrames();
    if (this.closed && this.failure !== null) handlers.onClosed(this.failure);
  }

  /** The local address of the connection (where a second listener on this host is reachable). */
  get localHost(): string {
    return this.socket.localAddress ?? '127.0.0.1';
  }

  get remoteAddress(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }

  private closedError(why: string, cause?: unknown): MemshiftError {
    return new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${this.peer}: ${why} during ${this.phase}`, { peer: this.peer, phase: this.phase, cause });
  }

  /**
   * Why the link broke. Over TLS, an alert is an authentication failure, and so is a peer that ends a
   * verified connection before its first byte: a TLS 1.3 server checks the client's certificate after
   * the client has finished its handshake, and closes without a word when it refuses it.
   */
  private linkError(why: string, cause?: unknown): MemshiftError {
    const silent = this.bytesReceived === 0 && this.peerVersion === null;
    // Only before the peer's first byte: a TLS error later (a bad record MAC) is a broken stream, not a refusal.
    if (this.secured !== null && silent) {
      const { security, side } = this.secured;
      if (cause instanceof Error && typeof (cause as { code?: unknown }).code === 'string') {
        const e = tlsFailure(cause, this.peer, security, side);
        if (e.code === ErrorCode.AUTH_FAILED) return e;
      }
      return refusedAfterHandshake(this.peer, security);
    }
    if (silent) {
      return new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${this.peer}: ${why} during ${this.phase}, before the peer sent a byte (a peer that requires TLS ends a plaintext connection so: both sides need the same security flags)`, { peer: this.peer, phase: this.phase, cause });
    }
    return this.closedError(why, cause);
  }

  private onRead(n: number): void {
    if (this.failure !== null) {
      // Failed: what still arrives is read and dropped, so that the peer's writes meet no reset before
      // it has read our ERROR frame (a reset would discard it unread).
      try {
        this.reader.commit(Math.min(n, this.reader.writable().length));
        this.reader.discard(this.reader.buffered);
      } catch {
        // A frame half read when we failed: start over on the same buffer, nothing in it matters now.
        this.reader = new FrameReader(this.reader.buf, this.reader.maxBody);
      }
      return;
    }
    if (this.closed) return;
    this.bytesReceived += n;
    if (this.handed !== null && this.handed.reader !== this.reader) {
      // This read went to the replaced reader's buffer: move it over.
      this.reader.writable().set(this.handed.view.subarray(0, n));
    }
    this.reader.commit(n);
    try {
      if (this.peerVersion === null) {
        const version = decodePreface(this.reader.peek(), 0, this.reader.buffered);
        if (version === null) return;
        this.peerVersion = version;
        this.reader.discard(PREFACE_BYTES);
      }
      this.drainFrames();
    } catch (err) {
      this.fail(toMemshiftError(err, ErrorCode.FRAME_MALFORMED, `${this.peer}`));
    }
  }

  private drainFrames(): void {
    if (this.handlers === null || this.peerVersion === null || this.closed) return;
    // Nothing after a failure is looked at: the first error is the one the peer hears.
    for (let f = this.reader.next(); f !== null && !this.closed && this.failure === null; f = this.reader.next()) this.handlers.onFrame(f);
  }

  /**
   * Moves receiving to `buf` (the destination's arena, once the handshake told it what to allocate),
   * carrying over bytes already buffered. Call from a frame handler or between reads.
   */
  switchReceiveBuffer(buf: Uint8Array, maxBody: number): void {
    const leftover = this.reader.peek();
    const next = new FrameReader(buf, maxBody);
    if (leftover.length > 0) {
      next.writable().set(leftover);
      next.commit(leftover.length);
    }
    this.reader = next;
  }

  /** Queues `bytes`; resolves when the socket has taken them. */
  send(bytes: Uint8Array): Promise<void> {
    return this.sendSegments([bytes]);
  }

  /** Queues several byte ranges as one write (writev), in order, without copying them. */
  sendSegments(segments: readonly Uint8Array[]): Promise<void> {
    if (this.closed || this.closing) return Promise.reject(this.failure ?? this.closedError('channel is closed'));
    return new Promise((resolve, reject) => {
      const done = (err?: Error | null): void => {
        if (err) reject(this.failure ?? this.linkError(err.message, err));
        else resolve();
      };
      let total = 0;
      if (segments.length === 1) {
        total = segments[0].length;
        this.socket.write(segments[0], done);
      } else {
        // One writev. (Over TLS, Node copies a multi-buffer write into one buffer before encrypting; not
        // corking does not avoid it, since writes queued behind a busy socket are coalesced the same way.)
        this.socket.cork();
        for (let i = 0; i < segments.length; i++) {
          total += segments[i].length;
          this.socket.write(segments[i], i === segments.length - 1 ? done : undefined);
        }
        this.socket.uncork();
      }
      this.bytesSent += total;
    });
  }

  /** Bytes queued in user space and not yet taken by the kernel. */
  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  /** Bytes the kernel has taken so far: a sender that sees this stand still while bytes queue is stalled. */
  get flushedBytes(): number {
    return this.bytesSent - this.socket.writableLength;
  }

  /**
   * Fails the channel: tells the peer why (an ERROR frame, best effort) and closes. Handlers see
   * `err` in onClosed at once; the socket lingers (reading and dropping) until the peer closes.
   */
  fail(err: MemshiftError): void {
    if (this.closed || this.failure !== null) return;
    this.failure = err;
    // Encoding is ours and cannot fail; a socket that is already unusable is destroyed below.
    const frame = encodeError({ code: err.code, message: err.message });
    if (this.socket.writable) this.socket.end(frame);
    // Long enough for the peer to read the ERROR frame while we drop what it still sends (the socket,
    // open, keeps the process up meanwhile; the timer need not).
    setTimeout(() => this.socket.destroy(), FAIL_LINGER_MS).unref();
    // Handlers hear it now, not when the socket closes: over a dead link that is when the linger ends.
    this.finish(err);
  }

  /** Orderly close after everything queued is written; onClosed(null). */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closing = true;
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 2000).unref();
    });
  }

  /** Tears the connection down now (used on cancel and by tests that cut links). */
  destroy(err?: MemshiftError): void {
    if (err !== undefined && this.failure === null) this.failure = err;
    this.socket.destroy();
  }

  private finish(error: MemshiftError | null): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers?.onClosed(error);
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
