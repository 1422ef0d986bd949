// Moved to src/pipeline/apply.ts (the decode side of the pipeline). This re-export remains only for
// test/migration/postcopy.test.ts, which another worktree owns; delete it once that import moves.

export { BatchApplier, type ApplyTotals } from '../../pipeline/apply.js';
