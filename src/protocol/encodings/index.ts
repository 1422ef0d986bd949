// The page encodings as one ops table, keyed by their wire value (after QEMU's MultiFDMethods): each
// encoding's facts — name in reports, negotiation bit, payload size rule, largest payload, and the
// host-side encode/decode where one exists — live in its own file, and the encoder
// (pipeline/encode-worker.ts), the batch decoder (page-batch.ts decodeBatch) and the applier
// (pipeline/apply.ts) consult this table instead of switching on the encoding themselves.
//
//   ENCODINGS[PageEncoding.*]:   0 zero    1 raw    2 xbzrle    3 lz4
//                                kernel    kernel   kernel      host (lz4-wasm)
//
// The per-page hot work of zero/raw/xbzrle is in the WASM kernels (assembly/batch-encode.ts and
// batch-apply.ts), which hold their own copy of the size rules; the wire format is the same on both.

import { PageEncoding, type PageEncodingValue } from '../constants.js';
import { lz4Ops } from './lz4.js';
import { raw } from './raw.js';
import { xbzrle } from './xbzrle.js';
import { zero } from './zero.js';

export type EncodingName = 'zero' | 'raw' | 'xbzrle' | 'lz4';

export interface EncodingOps {
  /** Wire value (PageEncoding). */
  readonly id: PageEncodingValue;
  /** Name in reports and error messages; the key of this encoding in EncodingCounts. */
  readonly name: EncodingName;
  /** Capability bit both sides must have set for this encoding to appear on the wire; 0 = always. */
  readonly capability: number;
  /** Where one page is encoded and decoded: in the batch kernels, or on the host thread (encode/decode here). */
  readonly perPage: 'kernel' | 'host';
  /** Largest payload of one page of `pageSize` bytes. */
  maxEncodedSize(pageSize: number): number;
  /** Why `size` is not a valid payload size for one page (a phrase for an error message), or null. */
  sizeError(size: number, pageSize: number): string | null;
  /** Largest payload the source keeps rather than sending the page raw (optional encodings only). */
  keepLimit?(pageSize: number): number;
  /** Host-side encode of one page: the payload, or null to send it raw instead. */
  encode?(page: Uint8Array, pageSize: number): Uint8Array | null;
  /** Host-side decode of one payload into the page; throws a MemshiftError when malformed. */
  decode?(payload: Uint8Array, pageSize: number): Uint8Array;
}

/** Indexed by wire value; the type makes the compiler check that each entry sits at its own. */
export const ENCODINGS = [zero, raw, xbzrle, lz4Ops] as const satisfies readonly [
  { readonly id: typeof PageEncoding.ZERO }, { readonly id: typeof PageEncoding.RAW },
  { readonly id: typeof PageEncoding.XBZRLE }, { readonly id: typeof PageEncoding.LZ4 },
];

/** The ops of a wire encoding value, or undefined for a value this version does not know. */
export function encodingOf(value: number): EncodingOps | undefined {
  return value >= 0 && value < ENCODINGS.length ? ENCODINGS[value] : undefined;
}

/** Name of a wire encoding value, `#n` for an unknown one. */
export function encodingName(value: number): string {
  return encodingOf(value)?.name ?? `#${value}`;
}

/** Pages per encoding, by name (reports). */
export type EncodingCounts = Record<EncodingName, number>;

export function emptyEncodingCounts(): EncodingCounts {
  return { zero: 0, raw: 0, xbzrle: 0, lz4: 0 };
}

/** Adds per-wire-value counts (index = PageEncoding value) into `into`. */
export function addEncodingCounts(into: EncodingCounts, byValue: readonly number[]): EncodingCounts {
  for (const e of ENCODINGS) into[e.name] += byValue[e.id] ?? 0;
  return into;
}
