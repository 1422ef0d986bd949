// A progress watchdog: calls `onStall` once when a counter has not moved for `limitMs` while
// `due()` says it should. One mechanism for both ends: the destination watches bytes received while
// the source is due to send, the source watches bytes taken by the kernel while some are queued.
// Timers are unref'd: a watchdog never keeps a process alive. Returns the function that stops it.

export function watchProgress(progress: () => number, due: () => boolean, limitMs: number, onStall: (silentMs: number) => void): () => void {
  let seen = progress();
  let since = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    const value = progress();
    if (value !== seen || !due()) {
      seen = value;
      since = now;
      return;
    }
    if (now - since >= limitMs) {
      clearInterval(timer);
      onStall(now - since);
    }
  }, Math.min(1000, Math.max(10, limitMs / 4)));
  timer.unref();
  return () => clearInterval(timer);
}
