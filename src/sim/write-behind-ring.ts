// The ring between a process's disk writers and its write-behind thread (write-behind.ts): slots of
// block data in a shared WebAssembly memory, whose start is page-aligned (V8 maps it whole), so a slot
// can go to an O_DIRECT file descriptor as it lies; and a control block of counters and slot records.
// The producer fills slot HEAD % SLOTS, then bumps HEAD; the thread writes slots in order (consecutive
// ones to consecutive offsets in one pwritev), then bumps TAIL. In order, so a block written twice
// lands as written last.
//
//   i32[0] HEAD  i32[1] TAIL  i32[2] ERRNO (first failure, 0 = none)
//   per slot s: i32[8 + 4s] fd  i32[9 + 4s] cached fd (O_DIRECT refused)  i32[10 + 4s] bytes
//               f64[(CTL_F64 + s)] file offset

export const SLOTS = 32;
/** 64 blocks of 4 KiB: a BLOCKS frame's run, in one slot. */
export const SLOT_BYTES = 256 * 1024;
/** Slots written by one pwritev at most. */
export const MAX_SLOTS_PER_WRITE = 16;

export const Ring = { HEAD: 0, TAIL: 1, ERRNO: 2, SLOT_I32: 8 } as const;
const SLOT_I32_STRIDE = 4;
/** The Float64Array index where slot offsets start. */
const CTL_F64 = Math.ceil(((Ring.SLOT_I32 + SLOTS * SLOT_I32_STRIDE) * 4) / 8);
export const CONTROL_BYTES = (CTL_F64 + SLOTS) * 8;

export interface RingViews {
  ctl: Int32Array;
  offsets: Float64Array;
  data: Uint8Array;
}

export function ringViews(control: SharedArrayBuffer, data: SharedArrayBuffer): RingViews {
  return { ctl: new Int32Array(control), offsets: new Float64Array(control, CTL_F64 * 8, SLOTS), data: new Uint8Array(data) };
}

export function slotField(slot: number, field: 'fd' | 'cachedFd' | 'bytes'): number {
  return Ring.SLOT_I32 + slot * SLOT_I32_STRIDE + (field === 'fd' ? 0 : field === 'cachedFd' ? 1 : 2);
}

export function slotData(views: RingViews, slot: number, bytes = SLOT_BYTES): Uint8Array {
  return views.data.subarray(slot * SLOT_BYTES, slot * SLOT_BYTES + bytes);
}
