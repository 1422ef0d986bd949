// `npm run soak -- --runs N [--seed S] [--from I]`: the CI campaign's trials (test/_support/campaign.ts)
// by the thousand, one after another, with a line per trial and a summary of outcomes at the end.
// Exits 1 if any trial broke an invariant (each is named with its number: rerun it with --from I --runs 1).

import { describeTrial, planTrial, runTrial } from './_support/campaign.js';
import { soakArgs } from './_support/soak-args.js';

const { runs, seed, from } = soakArgs(process.argv.slice(2), { runs: 1000, seed: 20261201 });

const outcomes = new Map<string, number>();
const violations: string[] = [];
/** Shared-storage trials: how many, how many with a fault or a kill, how many broke an invariant. */
const shared = { trials: 0, injected: 0, violations: 0 };
const t0 = performance.now();
for (let i = from; i < from + runs; i++) {
  const trial = planTrial(seed, i);
  const v = await runTrial(trial);
  const key = `${trial.mode} ${trial.fault.kind}: source ${v.source}, destination ${v.destination}`;
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  if (trial.shared) {
    shared.trials++;
    if (trial.fault.kind !== 'none' || trial.crash !== null) shared.injected++;
    if (v.violation !== null) shared.violations++;
  }
  const line = `${describeTrial(trial)} → source ${v.source}, destination ${v.destination} (${v.ms.toFixed(0)} ms)`;
  if (v.violation !== null) {
    violations.push(`${line}: ${v.violation}`);
    console.log(`VIOLATION ${line}: ${v.violation}`);
  } else console.log(line);
}
console.log(`\nseed ${seed}, trials ${from}..${from + runs - 1}, ${((performance.now() - t0) / 1000).toFixed(0)} s:`);
for (const [k, n] of [...outcomes].sort()) console.log(`  ${String(n).padStart(5)}  ${k}`);
console.log(`shared storage: ${shared.trials} switchovers, ${shared.injected} with a fault or a kill injected, ${shared.violations} with a lost or doubly-running guest`);
console.log(violations.length === 0 ? 'no lost or doubly-running guest' : `${violations.length} violations:\n${violations.join('\n')}`);
process.exitCode = violations.length === 0 ? 0 : 1;
