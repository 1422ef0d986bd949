// What `npm test` repeats at its very end when the suite fails: CI keeps only the tail of a long run's
// output, and uvu prints a failure beside its file, ten or more minutes of output before the totals.

const fileHeader = /^(\S+\.test\.js)\s*$/;
const tally = /\((\d+) \/ (\d+)\)\s*$/;
const blockLines = 14;

/** Where a FAIL block ends at the latest: the next file, the next failure, or the totals. */
const ends = (line: string): boolean => fileHeader.test(line.trim()) || /^\s*(FAIL\b|Total:)/.test(line);

/** Each file that fell short, with uvu's FAIL blocks and any early exit under it; '' when none did. */
export function failureRecap(plain: string): string {
  const lines = plain.split('\n');
  const out: string[] = [];
  let file = '(before the first file)';
  let section: string[] = [];
  let short = false;
  const close = (): void => {
    if (short || section.length > 0) out.push(`  ${file}`, ...section);
    section = [];
    short = false;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const header = fileHeader.exec(line.trim());
    if (header !== null) {
      close();
      file = header[1];
      continue;
    }
    const counted = tally.exec(line);
    if (counted !== null && Number(counted[1]) < Number(counted[2])) {
      short = true;
      section.push(`    ran ${counted[1]} of ${counted[2]}`);
    }
    if (/^\s*FAIL\b/.test(line)) {
      let end = i + 1;
      while (end < lines.length && end < i + blockLines && !ends(lines[end])) end++;
      const block = lines.slice(i, end).filter((l) => l.trim() !== '' && !/node_modules|node:internal/.test(l));
      section.push(...block.map((l) => `    ${l.trim()}`));
    }
    if (/Exiting early/.test(line)) section.push(`    ${line.trim()}`);
  }
  close();
  return out.length === 0 ? '' : `run-suite: what failed, again:\n${out.join('\n')}`;
}
