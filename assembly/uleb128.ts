// Unsigned LEB128 for XBZRLE run lengths: 7 bits a byte, low group first, 0x80 = more follows.
// Run lengths never exceed a page (64 KiB at most), so three bytes (21 bits) is the longest accepted
// form, and an over-long form (a last byte of 0 after the first) is rejected to keep decoding canonical.

@inline export const ULEB_MAX_BYTES: usize = 3;

@inline export function ulebSize(v: u32): usize {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : 3;
}

/** Writes `v` (< 2^21) at `ptr`; returns the bytes written. */
@inline export function ulebWrite(ptr: usize, v: u32): usize {
  if (v < 0x80) {
    store<u8>(ptr, <u8>v);
    return 1;
  }
  store<u8>(ptr, <u8>(v | 0x80));
  if (v < 0x4000) {
    store<u8>(ptr, <u8>(v >> 7), 1);
    return 2;
  }
  store<u8>(ptr, <u8>((v >> 7) | 0x80), 1);
  store<u8>(ptr, <u8>(v >> 14), 2);
  return 3;
}

/**
 * Reads a value at `ptr`, with `avail` bytes readable. Returns `value | bytes << 24`, or -1 when the
 * input ends inside the number, or -3 when it is over-long or wider than 21 bits.
 */
@inline export function ulebRead(ptr: usize, avail: usize): i32 {
  let value: u32 = 0;
  for (let n: usize = 0; n < ULEB_MAX_BYTES; n++) {
    if (n >= avail) return -1;
    const b = <u32>load<u8>(ptr + n);
    value |= (b & 0x7f) << (<u32>n * 7);
    if ((b & 0x80) == 0) {
      if (b == 0 && n > 0) return -3;
      return <i32>(value | (<u32>(n + 1) << 24));
    }
  }
  return -3;
}
