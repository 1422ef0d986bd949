// The memshift CLI run as a child of another memshift process (`demo` runs a destination, `cluster run`
// its hosts): the address it prints once it listens, and an end by SIGTERM, then SIGKILL.

import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** This installation's CLI entry point. */
export const CLI_ENTRY = fileURLToPath(new URL('./main.js', import.meta.url));

/** HOST:PORT from the child's "listening on HOST:PORT" line; rejects if it exits first or takes `timeoutMs`. */
export function listeningAddress(child: ChildProcess, what: string, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not listen within ${timeoutMs / 1000} s: ${err.slice(-400)}`)), timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.stderr?.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-400);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before listening: ${err}`));
    });
  });
}

/** Ends the child: SIGTERM, then SIGKILL if it is still there after `graceMs`. */
export function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
