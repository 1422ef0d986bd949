// A pre-touch thread (pretouch.ts): touches its share of the pages, then ends.

import { workerData } from 'node:worker_threads';
import { touchPages, type TouchRange } from './pretouch.js';

for (const range of workerData as TouchRange[]) touchPages(range);
