// The fault thread of a lazy restore (a worker): the guest runs before its pages are loaded, and each
// page its vCPU blocks on is read from the save file here at once, checked and written (saved-pages.ts),
// ahead of the background loader on the main thread. It blocks in Atomics.wait on the page gate's
// mailbox (it has nothing else to do: no socket, no event loop work), reads with pread, and ends when
// the main thread marks the board done. A page that fails its hash ends it with the error, as data.
//
//   vCPU ─ mailbox (Atomics) ─► this thread ─ pread ─► check, claim, write ─► present bit + notify ─► vCPU

import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { ErrorCode, MemshiftError, toMemshiftError } from '../errors.js';
import { Mailbox, readFault } from '../memory/page-gate.js';
import { ScratchAgent } from '../memory/scratch-agents.js';
import { scratchSlot } from '../memory/slab-layout.js';
import { isPresent, loadSavedPage, locatePage, type SavedRegionPages } from './saved-pages.js';
import { RestoreBoard, RestoreState, type RestoreFaultMessage, type RestoreFaultThreadData } from './restore-board.js';

const data = workerData as RestoreFaultThreadData;
const mailbox = new Int32Array(data.mailbox);
const board = new Int32Array(data.board);
const regions: SavedRegionPages[] = data.regions.map((r) => ({ ...r, hashes: new BigUint64Array(r.hashes) }));
const byId = new Map(regions.map((r) => [r.id, r]));
const fd = openSync(data.path, 'r');

try {
  let seq = 0;
  while (Atomics.load(board, RestoreBoard.STATE) === RestoreState.RUNNING) {
    Atomics.wait(mailbox, Mailbox.FAULT_SEQ, seq, 50);
    if (Atomics.load(mailbox, Mailbox.FAULT_SEQ) === seq) continue;
    const fault = readFault(mailbox);
    seq = fault.seq;
    const r = byId.get(fault.regionId);
    if (r === undefined) continue;
    const { slab, local } = locatePage(r, fault.page);
    // The loader may have got there since the vCPU posted it.
    if (isPresent(slab, local)) continue;
    // Read straight into this thread's scratch page of the slab, where the apply kernel takes it from.
    const scratch = scratchSlot(slab.layout, ScratchAgent.FAULT_THREAD).page;
    const at = r.dataOffset + fault.page * r.pageSize;
    if (readSync(fd, new Uint8Array(slab.memory.buffer, scratch, r.pageSize), 0, r.pageSize, at) !== r.pageSize) {
      throw new MemshiftError(ErrorCode.SAVE_FILE_TRUNCATED, `${data.path} ends inside page ${fault.page} of region ${r.id} (byte ${at})`, { regionId: r.id, page: fault.page });
    }
    if (loadSavedPage(r, fault.page, scratch)) Atomics.add(board, RestoreBoard.SERVED, 1);
  }
} catch (err) {
  const e = toMemshiftError(err, ErrorCode.IO, 'restore fault thread');
  const d = e.details as { regionId?: number; page?: number };
  const m: RestoreFaultMessage = { type: 'failed', code: e.code, message: e.message, regionId: d.regionId, page: d.page };
  parentPort!.postMessage(m);
} finally {
  closeSync(fd);
}
