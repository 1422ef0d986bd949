// A QEMU's guest RAM as memshift regions: every memory backend object the QEMU holds (QOM
// /objects/*), which must be a file shared with its mapping (memory-backend-file, share=on) so that
// another process reads and writes the very pages the guest runs on. Anything else is refused, naming
// the backend and what to start QEMU with instead.

import { ErrorCode, MemshiftError } from '../index.js';
import type { RegionSpec } from '../index.js';
import type { Qmp } from './qmp.js';

export interface RamBackend {
  /** QOM id (`-object memory-backend-file,id=…`). */
  id: string;
  path: string;
  bytes: number;
}

/** The page size memshift moves QEMU RAM in: the x86 base page, QEMU's own migration unit. */
export const QEMU_PAGE_BYTES = 4096;

function refuse(message: string): MemshiftError {
  return new MemshiftError(ErrorCode.QEMU, message);
}

/** The QEMU's RAM backends, in id order; refuses any that is not a shared file. */
export async function findRamBackends(qmp: Qmp): Promise<RamBackend[]> {
  const objects = await qmp.execute<{ name: string; type: string }[]>('qom-list', { path: '/objects' });
  const backends: RamBackend[] = [];
  for (const o of objects.filter((x) => /^child<memory-backend-/.test(x.type)).sort((a, b) => a.name.localeCompare(b.name))) {
    const type = o.type.slice('child<'.length, -1);
    const at = `/objects/${o.name}`;
    const get = <T>(property: string): Promise<T> => qmp.execute<T>('qom-get', { path: at, property });
    if (type !== 'memory-backend-file') {
      throw refuse(`QEMU's RAM backend ${o.name} is a ${type}: memshift carries RAM that lives in a shared file; start QEMU with -object memory-backend-file,id=${o.name},size=…,mem-path=/dev/shm/…,share=on and -machine memory-backend=${o.name}`);
    }
    const [path, share, bytes] = await Promise.all([get<string>('mem-path'), get<boolean>('share'), get<number>('size')]);
    if (!share) throw refuse(`QEMU's RAM backend ${o.name} (${path}) is not shared: with share=off QEMU's writes never reach the file; add share=on`);
    if (bytes % QEMU_PAGE_BYTES !== 0) throw refuse(`QEMU's RAM backend ${o.name} is ${bytes} bytes, not a whole number of ${QEMU_PAGE_BYTES}-byte pages`);
    backends.push({ id: o.name, path, bytes });
  }
  if (backends.length === 0) {
    throw refuse('QEMU has no memory backend object: start it with -object memory-backend-file,id=ram0,size=…,mem-path=/dev/shm/…,share=on -machine memory-backend=ram0');
  }
  return backends;
}

/** The backends as file-backed RAM regions, ids 0… in order. */
export function ramRegionSpecs(backends: readonly RamBackend[]): RegionSpec[] {
  return backends.map((b, id) => ({ id, name: b.id, kind: 'ram', pageSize: QEMU_PAGE_BYTES, pageCount: b.bytes / QEMU_PAGE_BYTES, file: { path: b.path, offset: 0 } }));
}
