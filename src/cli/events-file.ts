// `--events FILE|-`: the migration's events (the library's onEvent) and its progress samples as
// NDJSON, one object per line with `type` and a wall-clock `at` (ISO 8601), to a file or to stdout
// (`-`). Written synchronously, so the lines are in order and complete when the process exits, also
// after a signal; progress for people stays on stderr, independent of this.
//
//   {"type":"state","at":"…","role":"source","state":"precopy","elapsedMs":61.2}
//   {"type":"progress","at":"…","role":"source","phase":"precopy","iteration":1,…}
//   {"type":"pass","at":"…","role":"source","pass":{"iteration":1,"pages":…}}
//   {"type":"switchover","at":"…","role":"source","decision":{"rule":"downtime-limit",…}}
//   {"type":"outcome","at":"…","role":"source","outcome":"completed",…}

import { closeSync, openSync, writeSync } from 'node:fs';
import type { MigrationEvent, Progress } from '../index.js';

export interface EventsFile {
  event(e: MigrationEvent): void;
  progress(p: Progress): void;
  close(): void;
}

/** Opens `target` (a path, or `-` for stdout); null writes nothing. */
export function openEvents(target: string | undefined): EventsFile | null {
  if (target === undefined) return null;
  const fd = target === '-' ? 1 : openSync(target, 'w');
  const write = (o: object): void => {
    writeSync(fd, `${JSON.stringify({ ...o, at: new Date().toISOString() })}\n`);
  };
  return {
    event: (e) => write(e),
    progress: (p) => write({ type: 'progress', ...p }),
    close: () => {
      if (fd !== 1) closeSync(fd);
    },
  };
}
