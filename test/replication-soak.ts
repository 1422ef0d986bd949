// `npm run soak:replication -- --runs N [--seed S] [--from I]`: replication trials
// (test/_support/replication-trial.ts) one after another: the primary killed, its link cut or corrupted
// at a seeded point, or ended on purpose. A line per trial, a tally at the end; exits 1 if any trial
// broke an invariant (rerun it with --from I --runs 1).

import { describeReplicationTrial, planReplicationTrial, runReplicationTrial } from './_support/replication-trial.js';
import { soakArgs } from './_support/soak-args.js';

const { runs, seed, from } = soakArgs(process.argv.slice(2), { runs: 100, seed: 20261202 });

const outcomes = new Map<string, number>();
const violations: string[] = [];
const t0 = performance.now();
for (let i = from; i < from + runs; i++) {
  const trial = planReplicationTrial(seed, i);
  const v = await runReplicationTrial(trial);
  const key = `${trial.fault}: standby ${v.standby}, primary ${v.primary}`;
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  const line = `${describeReplicationTrial(trial)} → standby ${v.standby} (${v.epochsCommitted} epochs), primary ${v.primary}, ${v.outputsSeen} outputs seen (${v.ms.toFixed(0)} ms)`;
  if (v.violation !== null) {
    violations.push(`${line}: ${v.violation}`);
    console.log(`VIOLATION ${line}: ${v.violation}`);
  } else console.log(line);
}
console.log(`\nseed ${seed}, trials ${from}..${from + runs - 1}, ${((performance.now() - t0) / 1000).toFixed(0)} s:`);
for (const [k, n] of [...outcomes].sort()) console.log(`  ${String(n).padStart(5)}  ${k}`);
console.log(violations.length === 0 ? 'no lost output, no torn epoch, every standby memory equal to its replay' : `${violations.length} violations:\n${violations.join('\n')}`);
process.exitCode = violations.length === 0 ? 0 : 1;
