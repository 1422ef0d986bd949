// Sizes as people type them: `64MiB`, `1 GiB`, `512k`, `4096`. Used by the simulated guest's config
// and by the CLI's size flags; binary units only (a KiB is 1024 B, as memory is counted).

import { invalidArgument } from '../errors.js';

const UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 2 ** 20, mb: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gb: 2 ** 30, gib: 2 ** 30,
};

/** Parses `64MiB`, `1 GiB`, `512k`, `4096` into bytes; `field` names the option in errors. */
export function parseSize(text: string, field: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw invalidArgument(field, 'must be a size such as 4096, 64MiB or 1GiB', text);
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw invalidArgument(field, 'must be a positive whole number of bytes', text);
  return bytes;
}

export function formatBytes(n: number): string {
  if (n >= 2 ** 30 && n % 2 ** 30 === 0) return `${n / 2 ** 30}GiB`;
  if (n >= 2 ** 20 && n % 2 ** 20 === 0) return `${n / 2 ** 20}MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024}KiB`;
  return `${n}B`;
}
