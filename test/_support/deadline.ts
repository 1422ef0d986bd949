// A hang guard for tests that wait on sockets or processes: `deadline(ms, fn)` runs `fn` and fails
// with a named error if it has not settled after `ms`, so a hang fails one test instead of stalling the
// suite. Not a timing claim: `ms` is far above the expected time. Whatever the test started is ended
// by its suite's after.each hook (by PID for processes, by handle for sockets).

export function deadline<T>(ms: number, fn: () => Promise<T>): () => Promise<T> {
  return async () => {
    let timer: NodeJS.Timeout | undefined;
    const guard = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`test did not finish within its ${ms} ms deadline`)), ms);
    });
    try {
      return await Promise.race([fn(), guard]);
    } finally {
      clearTimeout(timer);
    }
  };
}
