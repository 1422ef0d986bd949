// Loading code compiled eagerly. V8 compiles a function when it is first called; code that first runs
// inside a migration's downtime (the switchover's steps, a vCPU thread resuming) would pay for its
// compilation there. A module graph imported through importEagerly is compiled whole as it loads,
// and V8's lazy compilation is set back once it has. The flag is process-wide: a function another
// thread compiles meanwhile is compiled eagerly too, which changes when it is compiled, not what runs.

import { setFlagsFromString } from 'node:v8';

/**
 * Runs `load` (an `import()`) with V8's eager compilation on; resolves to what it loaded. The modules
 * must only load: one that runs a thread's loop while it loads would leave the flag set for good.
 */
export async function importEagerly<T>(load: () => Promise<T>): Promise<T> {
  setFlagsFromString('--no-lazy');
  try {
    return await load();
  } finally {
    setFlagsFromString('--lazy');
  }
}
