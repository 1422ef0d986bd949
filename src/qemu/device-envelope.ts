// What the adapter sends as memshift's DEVICE_STATE for a QEMU guest: QEMU's own migration stream of
// everything but the shared RAM (x-ignore-shared: CPUs, devices, ROMs), wrapped with the RAM layout it
// belongs to and when the source QEMU stopped. Pure codec; the destination checks every field before
// QEMU sees a byte.
//
//   envelope := "MSQEMU01" headerLength:u32le header:JSON(headerLength) stream

import { ErrorCode, MemshiftError } from '../index.js';

export interface DeviceEnvelope {
  /** The source's RAM backends, in region order: the destination's must be the same. */
  backends: { id: string; bytes: number }[];
  /** QEMU's timestamp of the source's STOP event (µs since the epoch): the start of the downtime QEMU sees. */
  stoppedAtMicros: number;
  /** QEMU's device stream (`migrate` to a file with x-ignore-shared). */
  stream: Uint8Array;
}

const MAGIC = new TextEncoder().encode('MSQEMU01');
const MAX_HEADER_BYTES = 64 * 1024;

export function encodeDeviceEnvelope(e: DeviceEnvelope): Uint8Array {
  const header = new TextEncoder().encode(JSON.stringify({ backends: e.backends, stoppedAtMicros: e.stoppedAtMicros }));
  const out = new Uint8Array(MAGIC.length + 4 + header.length + e.stream.length);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(MAGIC.length, header.length, true);
  out.set(header, MAGIC.length + 4);
  out.set(e.stream, MAGIC.length + 4 + header.length);
  return out;
}

function invalid(message: string): MemshiftError {
  return new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, `QEMU device state: ${message}`);
}

export function decodeDeviceEnvelope(bytes: Uint8Array): DeviceEnvelope {
  if (bytes.length < MAGIC.length + 4 || MAGIC.some((b, i) => bytes[i] !== b)) throw invalid('not a QEMU device envelope (the source is not memshift qemu-source)');
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getUint32(MAGIC.length, true);
  if (length > MAX_HEADER_BYTES || MAGIC.length + 4 + length > bytes.length) throw invalid(`header of ${length} bytes in ${bytes.length}`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(MAGIC.length + 4, MAGIC.length + 4 + length)));
  } catch (cause) {
    throw invalid(`header is not JSON: ${(cause as Error).message}`);
  }
  const h = header as { backends?: unknown; stoppedAtMicros?: unknown };
  if (!Array.isArray(h.backends) || h.backends.length === 0 || h.backends.length > 64) throw invalid('no RAM backend list');
  const backends = h.backends.map((b: unknown, i) => {
    const x = b as { id?: unknown; bytes?: unknown };
    if (typeof x.id !== 'string' || x.id.length === 0 || x.id.length > 256 || !Number.isSafeInteger(x.bytes) || (x.bytes as number) <= 0) throw invalid(`backend ${i} is malformed`);
    return { id: x.id, bytes: x.bytes as number };
  });
  if (typeof h.stoppedAtMicros !== 'number' || !Number.isFinite(h.stoppedAtMicros) || h.stoppedAtMicros < 0) throw invalid('no stop time');
  return { backends, stoppedAtMicros: h.stoppedAtMicros, stream: bytes.subarray(MAGIC.length + 4 + length) };
}
