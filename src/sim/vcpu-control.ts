// The control block shared between the vCPU thread and its controller: a small SharedArrayBuffer
// driven by Atomics. Commands carry a sequence number; the vCPU acknowledges each by copying it to
// ACK_SEQ once the command has taken effect (e.g. once it is paused at a step boundary with its
// counters published), so the controller knows exactly which state it reads.
//
//   i32[0] CMD  i32[1] CMD_SEQ  i32[2] STATUS  i32[3] ACK_SEQ  i32[4] THROTTLE%  i32[5] RATE (0 = max)
//   i32[6..9] PRNG (valid while paused)
//   f64 @128 STEPS (published each batch, exact while paused)   f64 @136 STOP_AT (Infinity = none)

export const CONTROL_BLOCK_BYTES = 256;

export const Ctl = {
  CMD: 0,
  CMD_SEQ: 1,
  STATUS: 2,
  ACK_SEQ: 3,
  THROTTLE: 4,
  RATE: 5,
  PRNG: 6,
  /** Index into the Float64Array view. */
  F64_STEPS: 16,
  F64_STOP_AT: 17,
} as const;

export const Command = { RUN: 1, PAUSE: 2, EXIT: 3 } as const;
export type CommandValue = (typeof Command)[keyof typeof Command];

export const VcpuStatus = { NEW: 0, RUNNING: 1, PAUSED: 2, EXITED: 3 } as const;

export interface ControlViews {
  i32: Int32Array;
  f64: Float64Array;
}

export function controlViews(sab: SharedArrayBuffer): ControlViews {
  return { i32: new Int32Array(sab), f64: new Float64Array(sab) };
}
