// For an end-to-end suite: a fresh directory for each test, removed after it together with every
// process the test started (by PID), even when the test failed.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Report } from '../../src/index.js';
import { killAll } from './processes.js';

interface Hooks {
  before: { each: (fn: () => void) => void };
  after: { each: (fn: () => Promise<void>) => void };
}

/** `file(...names)`: a path in the current test's directory; `report(name)`: the report written there. */
export function perTestDir(test: Hooks, prefix: string): { file: (...names: string[]) => string; report: (name: string) => Report } {
  let dir = '';
  test.before.each(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
  });
  test.after.each(async () => {
    await killAll();
    rmSync(dir, { recursive: true, force: true });
  });
  const file = (...names: string[]): string => join(dir, ...names);
  return { file, report: (name) => JSON.parse(readFileSync(file(name), 'utf8')) as Report };
}
