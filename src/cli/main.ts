#!/usr/bin/env node
// The memshift command's entry: loads the program (commands.ts) compiled eagerly, then runs it.
//
// V8 compiles a function the first time it is called. A migration runs much of its code only once,
// at the switchover (the last pass's end, device state, the digest, resuming the guest), and that
// time is the guest's downtime: by default the downtime paid for parsing and compiling that code.
// Loading the program with `--no-lazy` compiles every function of its modules while they load,
// before any migration. The Node built-ins it imports load first, as usual: Node compiles them from
// a code cache that a changed flag would make it reject (~25 ms more per process here). The flag is
// set back before anything runs, so code loaded later (worker threads, lazy imports) compiles as
// usual. Start-up costs ~15 ms more, time to `listening on` of a `dest` (230 → 245 ms, medians of 8).

import v8 from 'node:v8';
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

v8.setFlagsFromString('--no-lazy');
let commands: typeof import('./commands.js');
try {
  commands = await import('./commands.js');
} finally {
  v8.setFlagsFromString('--lazy');
}
process.exitCode = await commands.runCommand(process.argv.slice(2));
