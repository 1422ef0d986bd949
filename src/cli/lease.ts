// `memshift lease show|break IMAGE`: the operator's tool for a shared image's single-runner lease
// (storage/lease.ts). `show` prints the current generation, its holder and whether it still binds;
// `break` frees it at the next generation, for the in-doubt case where the operator knows that nobody
// runs the guest (a host that died holding it): whoever takes it next may run the guest.

import { breakLease, readLease } from '../index.js';
import { parseCommand, usageError, type Flags } from './args.js';

export const leaseFlags: Flags = {
  json: { type: 'boolean', help: 'print the lease record as JSON' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function runLease(argv: readonly string[]): Promise<number> {
  const [action, image, ...rest] = argv;
  if (action === '--help' || action === undefined) {
    parseCommand(['--help'], 'lease show|break IMAGE', 'Show or break the single-runner lease of a shared image.', leaseFlags);
    return action === undefined ? 2 : 0;
  }
  if (action !== 'show' && action !== 'break') throw usageError('ACTION', 'must be show or break', action);
  if (image === undefined || image.startsWith('--')) throw usageError('IMAGE', 'is required (memshift lease show|break IMAGE)');
  const a = parseCommand(rest, `lease ${action} IMAGE`, 'Show or break the single-runner lease of a shared image.', leaseFlags);
  if (a === null) return 0;
  const r = action === 'break' ? breakLease(image) : readLease(image);
  if (a.json === true) {
    console.log(JSON.stringify(r));
    return 0;
  }
  if (r === null) {
    console.log(`${image}: no lease (never taken)`);
  } else if (r.owner === '') {
    console.log(`${image}: free (generation ${r.generation}, broken ${new Date(r.takenAtMs).toISOString()})`);
  } else {
    const left = r.expiresAtMs - Date.now();
    console.log(`${image}: generation ${r.generation}, held by ${JSON.stringify(r.owner)} since ${new Date(r.takenAtMs).toISOString()}, ${left > 0 ? `binding for another ${Math.ceil(left / 1000)} s` : `expired ${Math.ceil(-left / 1000)} s ago (free to take)`}`);
  }
  return 0;
}
