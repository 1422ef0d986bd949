// One exit status per outcome: an orchestrator must tell "the guest runs here" from "it may run there".

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ExitStatus, exitStatusOf } from '../../src/cli/exit-status.js';

test('each outcome maps to its exit status, and the statuses are distinct where the action differs', () => {
  assert.equal(
    (['completed', 'failed', 'cancelled', 'aborted', 'in-doubt', 'paused'] as const).map(exitStatusOf),
    [0, 1, 1, 1, 3, 4],
  );
  assert.is(new Set(Object.values(ExitStatus)).size, Object.keys(ExitStatus).length);
  assert.is(ExitStatus.USAGE, 2);
});

test.run();
