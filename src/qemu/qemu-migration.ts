// QEMU's own migration as the adapter drives it: device state only (x-ignore-shared: RAM in shared
// backends is left where it is, memshift carries it), through a file the adapter owns, with no rate
// limit (QEMU's default of 32 MiB/s would stretch the downtime for nothing: the guest is stopped).

import { ErrorCode, MemshiftError } from '../index.js';
import type { Qmp } from './qmp.js';

/**
 * Turns on x-ignore-shared and lifts the bandwidth cap on one QEMU (both ends need the capability).
 * Returns what puts both back as they were: a QEMU left with x-ignore-shared would, in a later
 * migration of its own, leave its RAM behind.
 */
export async function enableIgnoreShared(qmp: Qmp): Promise<() => Promise<void>> {
  const caps = await qmp.execute<{ capability: string; state: boolean }[]>('query-migrate-capabilities');
  const params = await qmp.execute<{ 'max-bandwidth'?: number }>('query-migrate-parameters');
  const ignoreShared = caps.find((c) => c.capability === 'x-ignore-shared')?.state ?? false;
  await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
  await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 2 ** 40 });
  return async () => {
    // Refused while a migration of QEMU's own is active (a device save under way): nothing to undo then.
    await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: ignoreShared }] }).catch(() => undefined);
    if (params['max-bandwidth'] !== undefined) await qmp.execute('migrate-set-parameters', { 'max-bandwidth': params['max-bandwidth'] }).catch(() => undefined);
  };
}

interface MigrateInfo {
  status?: string;
  'error-desc'?: string;
}

/** Polls query-migrate until QEMU's migration completes; MS_ERR_QEMU when it fails or takes longer than `timeoutMs`. */
export async function awaitMigration(qmp: Qmp, side: 'source' | 'destination', timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await qmp.execute<MigrateInfo>('query-migrate');
    if (info.status === 'completed') return;
    if (info.status === 'failed' || info.status === 'cancelled') {
      throw new MemshiftError(ErrorCode.QEMU, `QEMU's device migration (${side}) ${info.status}${info['error-desc'] !== undefined ? `: ${info['error-desc']}` : ''}`);
    }
    if (Date.now() > deadline) throw new MemshiftError(ErrorCode.QEMU, `QEMU's device migration (${side}) did not complete within ${timeoutMs} ms (status ${info.status ?? 'none'})`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** A path as one word of the shell command QEMU's exec: migration runs. */
export function shellQuote(path: string): string {
  return `'${path.replace(/'/g, `'\\''`)}'`;
}
