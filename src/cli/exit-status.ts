// What the CLI's exit status says, one value per outcome, so that an orchestrator can act on it
// without parsing the report: after `in-doubt` it must not resume the source guest before it knows
// whether the destination runs it; after `paused` both hosts hold part of the only complete copy.

import type { Outcome } from '../index.js';

export const ExitStatus = {
  /** The guest runs on the destination. */
  COMPLETED: 0,
  /** failed, cancelled or aborted: the guest runs on the source (or was never started here). */
  FAILED: 1,
  /** Bad flags or paths: nothing was started. */
  USAGE: 2,
  /**
   * The link broke after SWITCHOVER and the destination gave no answer to the source's queries (or it
   * was post-copy, which does not ask): it may run the guest; the source guest stays paused.
   */
  IN_DOUBT: 3,
  /** Post-copy lost its link: both sides keep every page and wait. */
  PAUSED: 4,
} as const;

export function exitStatusOf(outcome: Outcome): number {
  switch (outcome) {
    case 'completed':
      return ExitStatus.COMPLETED;
    case 'in-doubt':
      return ExitStatus.IN_DOUBT;
    case 'paused':
      return ExitStatus.PAUSED;
    case 'failed':
    case 'cancelled':
    case 'aborted':
      return ExitStatus.FAILED;
    default: {
      const never: never = outcome;
      throw new Error(`unknown outcome ${String(never)}`);
    }
  }
}
