// The arguments of the soak scripts (`npm run soak`, `npm run soak:replication`): --runs N, --seed S,
// --from I, each a non-negative integer.

export function soakArgs(argv: readonly string[], defaults: { runs: number; seed: number }): { runs: number; seed: number; from: number } {
  const flag = (name: string, fallback: number): number => {
    const i = argv.indexOf(`--${name}`);
    const value = i >= 0 ? Number(argv[i + 1]) : fallback;
    if (!Number.isInteger(value) || value < 0) throw new Error(`--${name} must be a non-negative integer (got ${argv[i + 1]})`);
    return value;
  };
  return { runs: flag('runs', defaults.runs), seed: flag('seed', defaults.seed), from: flag('from', 0) };
}
