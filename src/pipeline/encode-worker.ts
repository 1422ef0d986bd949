// Encoder worker (piscina): the encoder's tasks (encoder-tasks.ts) on a thread of their own, each task's
// answer an envelope. Named task `encodeBatch`: one PAGE_BATCH frame into a chunk of a slab's arena,
// reading guest pages in place from the shared memory; `scanPages`: the hash-scan of a file-backed slab.

import { workerData } from 'piscina';
import { toMemshiftError, ErrorCode } from '../errors.js';
import { boardOf } from '../memory/shared-board.js';
import { encodeInto, scanInto } from './encoder-tasks.js';
import { niceThisThread } from './thread-priority.js';
import { EncoderBoard, type EncodeRequest, type EncodeResult, type EncoderWorkerData, type Envelope, type ScanRequest } from './messages.js';

const data = workerData as EncoderWorkerData;
const control = boardOf(data.control);
const agent = Atomics.add(control, EncoderBoard.NEXT_AGENT, 1);
const keyBases = data.keyBases.map((k) => BigInt(k));

/** Named task `ready`: nothing, once this module (kernels, codecs) has loaded; the pool awaits it before pass 1. */
export function ready(): boolean {
  return true;
}

export function encodeBatch(req: EncodeRequest): Envelope<EncodeResult> {
  return envelope('encodeBatch', () => encodeInto(data.slabs, keyBases, agent, req));
}

/** Named task `scanPages`: hash-scan of a file-backed slab's pages [from, to); returns how many it marked dirty. */
export function scanPages(req: ScanRequest): Envelope<number> {
  return envelope('scanPages', () => scanInto(data.slabs, agent, req));
}

/** Runs a task at the niceness the board asks for; an error crosses back as data with its code. */
function envelope<T>(task: string, work: () => T): Envelope<T> {
  const nice = Atomics.load(control, EncoderBoard.NICENESS);
  if (nice > 0) niceThisThread(nice);
  try {
    return { ok: true, value: work() };
  } catch (err) {
    const e = toMemshiftError(err, ErrorCode.WORKER_FAILED, task);
    return { ok: false, code: e.code, message: e.message };
  }
}
