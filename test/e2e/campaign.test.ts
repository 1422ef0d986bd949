// The fault campaign in CI (test/_support/campaign.ts): 200 short migrations across every mode, each
// with a cut link, a frozen destination, a flipped bit or no fault at a seeded random point, each
// judged by the safety verdict (no lost guest, no guest running twice, memory equal to the replay).
// `npm run soak -- --runs N` runs the same trials by the thousand.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { describeTrial, planTrial, runTrial } from '../_support/campaign.js';
import { deadline } from '../_support/deadline.js';

const SEED = 20261201;
const TRIALS = 200;
const outcomes = new Map<string, number>();

for (let i = 0; i < TRIALS; i++) {
  const trial = planTrial(SEED, i);
  test(describeTrial(trial), deadline(60_000, async () => {
    const v = await runTrial(trial);
    const key = `${trial.mode} ${trial.fault.kind}: source ${v.source}, destination ${v.destination}`;
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    assert.is(v.violation, null, `${describeTrial(trial)} (source ${v.source}, destination ${v.destination})`);
  }));
}

test.after(() => {
  const lines = [...outcomes].sort().map(([k, n]) => `  ${String(n).padStart(3)}  ${k}`);
  console.log(`\ncampaign seed ${SEED}, ${TRIALS} trials:\n${lines.join('\n')}`);
});

test.run();
