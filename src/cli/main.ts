#!/usr/bin/env node
// The memshift command's entry: loads the program (commands.ts) compiled eagerly, then runs it.
//
// A migration runs much of its code only once, at the switchover (the last pass's end, device
// state, the digest, resuming the guest), and that time is the guest's downtime: loaded lazily, as
// V8 does by default, the downtime paid for compiling that code (src/import-eagerly.ts). The Node
// built-ins the program imports load first, as usual: Node compiles them from a code cache that a
// changed flag would make it reject (~25 ms more per process here). Start-up costs ~15–30 ms more, a
// `dest`'s time to `listening on` (230 → 245 and 247 → 274 ms, medians of 8 in two batches).

import 'node:child_process';
import 'node:crypto';
import 'node:fs';
import 'node:fs/promises';
import 'node:http';
import 'node:https';
import 'node:net';
import 'node:os';
import 'node:path';
import 'node:perf_hooks';
import 'node:tls';
import 'node:url';
import 'node:util';
import 'node:worker_threads';
import { importEagerly } from '../import-eagerly.js';

const commands = await importEagerly(() => import('./commands.js'));
process.exitCode = await commands.runCommand(process.argv.slice(2));
