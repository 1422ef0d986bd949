// Typed views over a WebAssembly.Memory. Guest memories are created at their final size and never
// grow, but a view cache still keys on `memory.buffer`, so a memory that did grow (a caller's own)
// gets fresh views instead of stale ones.

export interface MemoryViews {
  readonly buffer: ArrayBufferLike;
  readonly u8: Uint8Array;
  readonly i32: Int32Array;
  readonly u32: Uint32Array;
  readonly dv: DataView;
}

const cache = new WeakMap<WebAssembly.Memory, MemoryViews>();

/** Views over the whole of `memory`, re-derived when its buffer changes. */
export function viewsOf(memory: WebAssembly.Memory): MemoryViews {
  const buffer = memory.buffer;
  const hit = cache.get(memory);
  if (hit !== undefined && hit.buffer === buffer && hit.u8.byteLength === buffer.byteLength) return hit;
  const views: MemoryViews = {
    buffer,
    u8: new Uint8Array(buffer),
    i32: new Int32Array(buffer),
    u32: new Uint32Array(buffer),
    dv: new DataView(buffer),
  };
  cache.set(memory, views);
  return views;
}

/** A Buffer over `len` bytes of `memory` at `offset`, without copying (for socket writes). */
export function bufferOf(memory: WebAssembly.Memory, offset: number, len: number): Buffer {
  return Buffer.from(memory.buffer as ArrayBuffer, offset, len);
}
