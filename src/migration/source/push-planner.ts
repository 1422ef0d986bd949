// Moved to src/pipeline/push-planner.ts. This re-export remains only for test/migration/postcopy.test.ts,
// which another worktree owns; delete it once that import moves.

export { MIN_WINDOWS_PER_PIVOT, PushPlanner, type PushWindow } from '../../pipeline/push-planner.js';
