// A hostile source (after Firecracker's malicious_handler): it completes a valid handshake with a
// real destination process and then sends whatever a test asks for, built with the real codec so
// that exactly one thing is wrong at a time.

import net from 'node:net';
import { Kernels } from '../../src/wasm/kernels.js';
import { encodePreface, encodeHello } from '../../src/protocol/handshake.js';
import { encodeDeviceState, encodeSwitchover, decodeError } from '../../src/protocol/control.js';
import { encodeBatchFrame } from '../../src/protocol/page-batch.js';
import { FrameType, PageEncoding, Capability } from '../../src/protocol/constants.js';
import { readFrameHeader } from '../../src/protocol/frame.js';
import { encodeCpuState } from '../../src/sim/index.js';

const PAGE = 4096;

export class HostilePeer {
  private received = Buffer.alloc(0);
  private readonly kernels: Kernels;
  private readonly scratch: Uint8Array;

  private constructor(private readonly socket: net.Socket, readonly pages: number) {
    const memory = new WebAssembly.Memory({ initial: 4, maximum: 4, shared: true });
    this.kernels = new Kernels(memory);
    this.scratch = new Uint8Array(memory.buffer, 65536, PAGE);
    socket.on('data', (d: Buffer) => { this.received = Buffer.concat([this.received, d]); });
    socket.on('error', () => undefined);
  }

  static connect(port: number, pages: number): Promise<HostilePeer> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new HostilePeer(s, pages)));
      s.once('error', reject);
    });
  }

  send(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve) => this.socket.write(bytes, () => resolve()));
  }

  /** Preface + HELLO for one RAM region of `pages` pages, offering `capabilities`; waits for HELLO_ACK. */
  async handshake(capabilities: number = Capability.XBZRLE): Promise<void> {
    await this.send(encodePreface());
    await this.send(encodeHello({
      session: new Uint8Array(16).fill(7), role: 0, mode: 'live', capabilities,
      regions: [{ id: 0, name: 'ram', kind: 'ram', pageSize: PAGE, pageCount: this.pages }],
    }));
    await this.waitFor(FrameType.HELLO_ACK);
  }

  private hashOf(page: Uint8Array): bigint {
    this.scratch.set(page);
    return this.kernels.hashPage(this.scratch.byteOffset, PAGE);
  }

  /** A PAGE_BATCH of raw pages filled with `fill` (the hash a lie when asked). */
  rawBatch(pages: number[], fill: number, opts: { lieAboutHash?: boolean } = {}): Uint8Array {
    const content = new Uint8Array(PAGE).fill(fill);
    const hash = this.hashOf(content) ^ (opts.lieAboutHash ? 1n : 0n);
    return encodeBatchFrame(0, 1, pages.map((page) => ({ page, encoding: PageEncoding.RAW, size: PAGE, hash, payload: content })));
  }

  deltaBatch(page: number, delta: Uint8Array): Uint8Array {
    return encodeBatchFrame(0, 1, [{ page, encoding: PageEncoding.XBZRLE, size: delta.length, hash: 0n, payload: delta }]);
  }

  /** Sends `frame` with one bit of its checked bytes flipped (`bit` counts from the body's start). */
  sendCorrupted(frame: Uint8Array, bit: number): Promise<void> {
    const copy = frame.slice();
    copy[16 + (bit >> 3)] ^= 1 << (bit & 7);
    return this.send(copy);
  }

  /** Just a frame header announcing `length` body bytes. */
  sendHeader(type: number, length: number): Promise<void> {
    const h = new Uint8Array(16);
    const dv = new DataView(h.buffer);
    dv.setUint32(0, length >>> 0, true);
    dv.setUint8(4, type);
    dv.setUint32(8, length >>> 0, true);
    return this.send(h);
  }

  deviceState(): Uint8Array {
    return encodeDeviceState(encodeCpuState({
      shape: { kind: 'idle', pageCount: this.pages, pageSize: PAGE, hotStart: 0, hotPages: 1, hotThreshold: 0, diskBlocks: [] },
      fill: 'zero', seed: 1, stepsPerSecond: 0, counters: { prng: [1, 2, 3, 4], steps: 0 },
    }));
  }

  switchover(digest: bigint): Uint8Array {
    return encodeSwitchover({ mode: 0, iterations: 1, digest, guestSteps: 0, pagesSent: 1, missingPages: 0 });
  }

  private async waitFor(type: number, timeoutMs = 10_000): Promise<Uint8Array | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let at = 12; // after the destination's preface
      while (this.received.length >= at + 16) {
        const h = readFrameHeader(this.received, at, this.received.length);
        if (h === null || this.received.length < at + 16 + h.bodyLength) break;
        if (h.type === type) return this.received.subarray(at + 16, at + 16 + h.bodyLength);
        at += 16 + h.bodyLength;
      }
      if (Date.now() > deadline || this.socket.destroyed) return null;
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /**
   * Stops reading and sends `frame` over and over for `ms`, as a source busy with its next batches does;
   * returns the first write's failure (null if every write was taken), then reads again.
   */
  async sendDeaf(frame: Uint8Array, ms: number): Promise<Error | null> {
    this.socket.pause();
    const until = Date.now() + ms;
    let failure: Error | null = null;
    while (failure === null && Date.now() < until) {
      failure = await new Promise<Error | null>((resolve) => this.socket.write(frame, (err) => resolve(err ?? null)));
      await new Promise((r) => setTimeout(r, 5));
    }
    this.socket.resume();
    return failure;
  }

  /** The ERROR frame the destination answered with, if any. */
  async errorAnswer(): Promise<{ code: string; message: string } | null> {
    const body = await this.waitFor(FrameType.ERROR);
    return body === null ? null : decodeError(body, 0, body.length);
  }

  close(): void {
    this.socket.destroy();
  }
}
