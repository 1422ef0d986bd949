// Small shared pieces of the pure codecs: a bounds-checked reader over a frame body, and the error
// every decoder raises for a body that does not follow its grammar.

import { ErrorCode, MemshiftError } from '../errors.js';

export function malformed(what: string, frameType?: number): MemshiftError {
  return new MemshiftError(ErrorCode.FRAME_MALFORMED, what, { frameType });
}

/** Reads little-endian fields from [offset, end) and throws FRAME_MALFORMED instead of reading past end. */
export class BodyReader {
  private readonly dv: DataView;
  private at: number;
  private readonly end: number;

  constructor(buf: Uint8Array, offset: number, length: number, private readonly what: string) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.at = offset;
    this.end = offset + length;
    if (this.end > buf.byteLength) throw malformed(`${what}: body runs past its buffer`);
  }

  get remaining(): number {
    return this.end - this.at;
  }

  get offset(): number {
    return this.at;
  }

  private need(n: number, field: string): number {
    if (this.end - this.at < n) throw malformed(`${this.what}: truncated at ${field} (needs ${n} bytes, ${this.end - this.at} left)`);
    const at = this.at;
    this.at += n;
    return at;
  }

  u8(field: string): number {
    return this.dv.getUint8(this.need(1, field));
  }

  u16(field: string): number {
    return this.dv.getUint16(this.need(2, field), true);
  }

  u32(field: string): number {
    return this.dv.getUint32(this.need(4, field), true);
  }

  /** A u64 that must fit a JS number exactly (counters, byte totals). */
  u64(field: string): number {
    const v = this.dv.getBigUint64(this.need(8, field), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed(`${this.what}: ${field} ${v} exceeds 2^53`);
    return Number(v);
  }

  /** A u64 kept as bigint (hashes, digests). */
  u64big(field: string): bigint {
    return this.dv.getBigUint64(this.need(8, field), true);
  }

  f64(field: string): number {
    const v = this.dv.getFloat64(this.need(8, field), true);
    if (!Number.isFinite(v)) throw malformed(`${this.what}: ${field} is not a finite number`);
    return v;
  }

  bytes(n: number, field: string): Uint8Array {
    const at = this.need(n, field);
    return new Uint8Array(this.dv.buffer, this.dv.byteOffset + at, n);
  }

  /** Requires that every byte was consumed: trailing bytes are a grammar error, not padding. */
  done(): void {
    if (this.at !== this.end) throw malformed(`${this.what}: ${this.end - this.at} unexpected trailing bytes`);
  }
}

/** Appends little-endian fields to a growing array; for small control bodies. */
export class BodyWriter {
  private buf = new Uint8Array(64);
  private dv = new DataView(this.buf.buffer);
  private at = 0;

  private room(n: number): number {
    if (this.at + n > this.buf.length) {
      const grown = new Uint8Array(Math.max(this.buf.length * 2, this.at + n));
      grown.set(this.buf.subarray(0, this.at));
      this.buf = grown;
      this.dv = new DataView(grown.buffer);
    }
    const at = this.at;
    this.at += n;
    return at;
  }

  // room() may replace buf and dv, so it runs before either is read.
  u8(v: number): this { const at = this.room(1); this.dv.setUint8(at, v); return this; }
  u16(v: number): this { const at = this.room(2); this.dv.setUint16(at, v, true); return this; }
  u32(v: number): this { const at = this.room(4); this.dv.setUint32(at, v, true); return this; }
  u64(v: number | bigint): this { const at = this.room(8); this.dv.setBigUint64(at, BigInt(v), true); return this; }
  f64(v: number): this { const at = this.room(8); this.dv.setFloat64(at, v, true); return this; }
  bytes(b: Uint8Array): this { const at = this.room(b.length); this.buf.set(b, at); return this; }

  finish(): Uint8Array {
    return this.buf.slice(0, this.at);
  }
}
