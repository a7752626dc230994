// Run 24 call 3 (bench/QUALITY.md "Run 24"): DP − twin at a round every cell reached, read from the cells' logs, so
// that cells cut at the call's deadline still count (their stdout has no result; their log has every scored round).
//   node dist/bench/quality-run24-at-round.js --round 100 /tmp/q22/*.log
// Per table and seed: the held-out accuracy at that round and the best up to it, for DP and its twin, and DP − twin;
// then per table the mean ± sd of the paired differences with a 95% t interval.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { pairedSummary } from './quality-run22-table';

interface AtRound {
  readonly at: number;
  readonly bestUpTo: number;
}

/** The accuracy (%) at `round` and the best up to it, from a cell's log lines `… round N: accuracy X%, loss Y`. */
export function atRound(log: string, round: number): AtRound | undefined {
  let at: number | undefined;
  let bestUpTo = -Infinity;
  for (const m of log.matchAll(/ round (\d+): accuracy ([\d.]+)%/g)) {
    const r = Number(m[1]);
    const a = Number(m[2]);
    if (r > round) continue;
    bestUpTo = Math.max(bestUpTo, a);
    if (r === round) at = a;
  }
  return at === undefined ? undefined : { at, bestUpTo };
}

async function main(): Promise<void> {
  const cmd = new Command().requiredOption('--round <n>', 'the round every cell reached').argument('<logs...>').parse();
  const round = Number(cmd.opts<{ round: string }>().round);
  const cells = new Map<string, AtRound>();
  for (const file of cmd.args) {
    const m = /^(x2\d\w*)-(.+)-(dp8|clip)-(\d+)\.log$/.exec(path.basename(file));
    const a = m ? atRound(await fs.readFile(file, 'utf8'), round) : undefined;
    if (m && a) cells.set(`${m[1]}-${m[2]}|${m[4]}|${m[3]}`, a);
  }
  const out = [
    `| table | seed | DP at round ${round} | twin | DP − twin | DP best ≤ ${round} | twin | DP − twin |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  const tables = [...new Set([...cells.keys()].map((k) => k.split('|')[0]))].sort();
  const summary: string[] = [];
  for (const t of tables) {
    const at: number[] = [];
    const best: number[] = [];
    const seeds = [...new Set([...cells.keys()].filter((k) => k.startsWith(`${t}|`)).map((k) => k.split('|')[1]))].sort();
    for (const s of seeds) {
      const dp = cells.get(`${t}|${s}|dp8`);
      const tw = cells.get(`${t}|${s}|clip`);
      if (!dp || !tw) continue;
      at.push(dp.at - tw.at);
      best.push(dp.bestUpTo - tw.bestUpTo);
      const f = (x: number): string => x.toFixed(2);
      out.push(`| ${t} | ${s} | ${f(dp.at)} | ${f(tw.at)} | ${f(dp.at - tw.at)} | ${f(dp.bestUpTo)} | ${f(tw.bestUpTo)} | ${f(dp.bestUpTo - tw.bestUpTo)} |`);
    }
    summary.push(`| ${t} | ${at.length} | ${pairedSummary(at.map((x) => x / 100))} | ${pairedSummary(best.map((x) => x / 100))} |`);
  }
  process.stdout.write(
    [...out, '', '| table | pairs | DP − twin at the round | DP − twin, best up to it |', '| --- | --- | --- | --- |', ...summary, ''].join('\n'),
  );
}

if (require.main === module) void main();
