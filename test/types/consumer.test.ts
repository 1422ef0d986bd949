// The published declarations as an integrator compiles them: a project that imports `memshift` and
// `memshift/sim` under `strict`, with `skipLibCheck: false`, compiles with the ES lib alone (no DOM)
// and with the DOM lib too (the WebAssembly.Memory interface memshift declares merges with DOM's).

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
// typescript's exports map hides bin/: find it next to the main module.
const TSC = join(dirname(createRequire(import.meta.url).resolve('typescript')), '..', 'bin', 'tsc');

const CONSUMER = `import { migrate, receive, listen, type MemorySource, type Report } from 'memshift';
import { SimulatedGuest, replay, resolveGuestConfig } from 'memshift/sim';
export async function run(source: MemorySource): Promise<Report> {
  const guest = SimulatedGuest.create(resolveGuestConfig({ memoryBytes: 16 << 20, seed: 1 }));
  void guest; void replay; void receive; void listen;
  return migrate(source, '127.0.0.1:7000', { security: 'insecure' });
}
`;

function compile(lib: string[]): { code: number; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-consumer-'));
  try {
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(ROOT, join(dir, 'node_modules', 'memshift'));
    symlinkSync(join(ROOT, 'node_modules', '@types'), join(dir, 'node_modules', '@types'));
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
    writeFileSync(join(dir, 'main.ts'), CONSUMER);
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, lib, types: ['node'], noEmit: true, skipLibCheck: false },
      include: ['main.ts'],
    }));
    try {
      execFileSync(process.execPath, [TSC, '-p', join(dir, 'tsconfig.json')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      return { code: 0, output: '' };
    } catch (err) {
      const e = err as { status: number; stdout: string; stderr: string };
      return { code: e.status, output: `${e.stdout}${e.stderr}` };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a strict consumer without the DOM lib and without skipLibCheck compiles against the declarations', () => {
  const r = compile(['ES2023']);
  assert.is(r.code, 0, r.output);
});

test('so does one with the DOM lib (the declared WebAssembly.Memory merges with DOM\'s)', () => {
  const r = compile(['ES2023', 'DOM']);
  assert.is(r.code, 0, r.output);
});

test.run();
