// Where a simulated guest's disks live, for `source` and `dest`: a directory of images (`disk0.img`, …)
// and whether the other host reaches the same directory (shared storage: the images are leased, never
// copied). `replay` takes only --dump-disk: its images are its dump.

import type { GuestStorageOptions } from '../sim/simulated-guest.js';
import { optionalString, parseChoice, parseInteger, requireString, usageError, type Flags, type Parsed } from './args.js';

export const storageFlags: Flags = {
  storage: { type: 'string', value: 'shared|local', help: 'local: the guest\'s disks move with it block by block; shared: both hosts reach --disk-dir, the disks never move and a lease beside each image says which host runs it', default: 'local' },
  'disk-dir': { type: 'string', value: 'DIR', help: 'directory of the disk images disk0.img, … (shared storage: the same path on both hosts; local: default a new temporary directory)' },
  'lease-ttl': { type: 'string', value: 'MS', help: 'shared storage: how long a lease lasts unless renewed (renewed every third of it)', default: '10000' },
};

/** The storage of a guest with `disks` disks (source), or of any guest that may arrive (dest: disks = null); null: none named. */
export function storageFrom(a: Parsed, disks: number | null): GuestStorageOptions | null {
  const storage = parseChoice(requireString(a, 'storage'), '--storage', ['shared', 'local'] as const);
  const dir = optionalString(a, 'disk-dir');
  const leaseTtlMs = parseInteger(requireString(a, 'lease-ttl'), '--lease-ttl', 100);
  if (storage === 'shared') {
    if (dir === undefined) throw usageError('--disk-dir', 'is required with --storage shared (the directory both hosts reach)');
    return { diskDir: dir, shared: true, leaseTtlMs };
  }
  // Local: the disks move block by block; without --disk-dir the guest makes a temporary directory.
  return dir === undefined || disks === 0 ? null : { diskDir: dir, shared: false, leaseTtlMs };
}
