// Loading code compiled eagerly. V8 compiles a function when it is first called; code that first runs
// inside a migration's downtime (the switchover's steps, a vCPU thread resuming) would pay for its
// compilation there. A module graph imported through importEagerly is compiled whole as it loads,
// and V8's lazy compilation is set back once it has (a process started with --no-lazy is left so).
// WebAssembly likewise: compileWasmEagerly compiles every function of a module as it is made.
//
// The flag is process-wide: a function another thread compiles meanwhile is compiled eagerly too, and
// a thread that finishes its own load sets lazy compilation back under one still loading, which then
// compiles the rest of its modules lazily. Either changes when code is compiled, never what runs.

import { setFlagsFromString } from 'node:v8';

/** Whether the process was started with V8 flag `flag` (on the command line or in NODE_OPTIONS). */
function startedWith(flag: string): boolean {
  return process.execArgv.includes(flag) || (process.env.NODE_OPTIONS ?? '').split(/\s+/).includes(flag);
}

const eagerFromStart = startedWith('--no-lazy');

/**
 * Runs `load` (an `import()`) with V8's eager compilation on; resolves to what it loaded. The modules
 * must only load: one that runs a thread's loop while it loads would leave the flag set.
 */
export async function importEagerly<T>(load: () => Promise<T>): Promise<T> {
  if (eagerFromStart) return load();
  setFlagsFromString('--no-lazy');
  try {
    return await load();
  } finally {
    setFlagsFromString('--lazy');
  }
}

/** Sets lazy compilation back for a thread that was ended while it loaded (its own reset never ran). */
export function compileLazilyAgain(): void {
  if (!eagerFromStart) setFlagsFromString('--lazy');
}

const wasmEagerFromStart = startedWith('--no-wasm-lazy-compilation');

/**
 * Makes a WebAssembly module with every function compiled (~1 ms for the kernels here), where V8
 * would compile each on its first call (0.05–0.09 ms for a small kernel). V8 shares compiled modules
 * between the process's threads (its native module cache): threads that compile the same bytes later
 * pay nothing.
 */
export function compileWasmEagerly(bytes: BufferSource): WebAssembly.Module {
  if (wasmEagerFromStart) return new WebAssembly.Module(bytes);
  setFlagsFromString('--no-wasm-lazy-compilation');
  try {
    return new WebAssembly.Module(bytes);
  } finally {
    setFlagsFromString('--wasm-lazy-compilation');
  }
}
