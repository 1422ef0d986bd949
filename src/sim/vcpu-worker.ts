// The simulated vCPU thread's entry: loads the thread (vcpu-thread.ts) compiled eagerly, so that its
// first steps after a resume, which count in the guest's downtime, do not wait for V8 to compile them
// (a destination's vCPU went from ~0.7–1.0 ms between the resume command and its acknowledgement to
// ~0.2–0.3 ms, in-memory timestamps of a 1 GiB idle migration).

import { parentPort, workerData } from 'node:worker_threads';
import { importEagerly } from '../import-eagerly.js';
import type { VcpuWorkerData } from './vcpu-thread.js';

// The loop runs once the import is done: inside it, the import would never end, nor set the flag back.
const { runVcpu } = await importEagerly(() => import('./vcpu-thread.js'));
parentPort!.postMessage('loaded');
runVcpu(workerData as VcpuWorkerData);
