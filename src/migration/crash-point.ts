// Named points where a process can be made to die on purpose, for the tests that must show a
// switchover is safe whichever step it stops at (as CRIU's CRIU_FAULT): MEMSHIFT_CRASH_AT=<point>
// kills this process with SIGKILL when it reaches <point>: no cleanup, no last message, as a host
// that loses power. Unset (always, outside such tests), each point is a comparison with undefined.

const armed = process.env.MEMSHIFT_CRASH_AT;

export type CrashPointName =
  | 'source-before-handover'
  | 'source-after-handover'
  | 'source-after-switchover-sent'
  | 'destination-before-accept'
  | 'destination-after-accept'
  | 'destination-after-resume';

export const CRASH_POINTS: readonly CrashPointName[] = [
  'source-before-handover', 'source-after-handover', 'source-after-switchover-sent',
  'destination-before-accept', 'destination-after-accept', 'destination-after-resume',
];

export function crashPoint(name: CrashPointName): void {
  if (armed === name) process.kill(process.pid, 'SIGKILL');
}
