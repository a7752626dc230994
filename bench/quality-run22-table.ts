// Run 22's table (bench/QUALITY.md "Run 22"): per cell the held-out summary (seedRow, run 17's definitions), ε as the
// manifest stamps it beside the accountant's, the digest of the draws the cell observed and its members' update
// norms against C; per regime and arm the mean ± standard deviation over seeds; and per seed the PAIRED difference
// DP − twin (the two arms of a seed drew the same cohorts when their digests agree), with its mean, standard
// deviation and a 95% t interval.
//   node dist/bench/quality-run22-table.js --last 10 cell-*.out
// Each input is a cell process's stdout (its result is the last line); a cell cut short has none and is listed.
import { Command } from 'commander';
import type { SampledCellResult } from './quality-sampled-cell';
import { seedRow, type SeedRow } from './quality-run17-table';
import { readCellOut } from './quality-run21-table';

const pct = (x: number | undefined): string => (x !== undefined && Number.isFinite(x) ? (100 * x).toFixed(1) : '–');
const pts = (x: number): string => (Number.isFinite(x) ? `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}` : '–');
const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: readonly number[]): number => (xs.length < 2 ? NaN : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));
/** Student's t at 97.5% for 1-30 degrees of freedom (a 95% two-sided interval on a mean of ≤ 31 pairs). */
const T975 = [
  NaN,
  12.706,
  4.303,
  3.182,
  2.776,
  2.571,
  2.447,
  2.365,
  2.306,
  2.262,
  2.228,
  2.201,
  2.179,
  2.16,
  2.145,
  2.131,
  2.12,
  2.11,
  2.101,
  2.093,
  2.086,
  2.08,
  2.074,
  2.069,
  2.064,
  2.06,
  2.056,
  2.052,
  2.048,
  2.045,
  2.042,
];
/** t at 97.5% for `df` degrees of freedom: the table to 30, then the value at the bracket's lower end (wider). */
export const t975 = (df: number): number => T975[df] ?? (df <= 40 ? 2.042 : df <= 60 ? 2.021 : df <= 120 ? 2.0 : 1.98);
const meanSd = (xs: readonly number[]): string => `${pct(mean(xs))} ± ${pct(sd(xs))}`;

/** Paired differences DP − twin (fractions): mean ± sd, a 95% t interval, and how many are within 3 points. */
export function pairedSummary(xs: readonly number[]): string {
  const h = t975(xs.length - 1) * (sd(xs) / Math.sqrt(xs.length));
  return `**${pts(mean(xs))}** ± ${pct(sd(xs))} (95%: ${pts(mean(xs) - h)} to ${pts(mean(xs) + h)}); within 3 on ${xs.filter((x) => x >= -0.03).length} of ${xs.length}`;
}

interface Cell {
  readonly regime: string;
  readonly arm: string;
  readonly row: SeedRow;
  readonly r: SampledCellResult;
}

/** The markdown of run 22's cells. */
export function run22Table(cells: readonly Cell[], failed: readonly string[]): string {
  const out = [
    '| regime | arm | seed | best, % (round) | final, % | mean of last 10, % | largest drop after round 6 | ε manifest / accountant | draws (sha256) | members’ median norm, rounds > 100 | clipped (> C) | seconds |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  const sorted = [...cells].sort((a, b) => (a.regime + a.arm).localeCompare(b.regime + b.arm) || a.row.seed - b.row.seed);
  for (const { regime, arm, row, r } of sorted) {
    const curve = r.curves[0];
    const end = curve[curve.length - 1];
    const late = curve.filter((p) => p.round > 100 && p.extra['members.norm_median'] !== undefined);
    const norm = late.length ? mean(late.map((p) => p.extra['members.norm_median'])).toFixed(2) : '–';
    const clipped = late.length ? pct(mean(late.map((p) => p.extra['members.clipped']))) + '%' : '–';
    const eps = (x: number | undefined): string => (x !== undefined && Number.isFinite(x) && x < 1e3 ? x.toFixed(2) : '–');
    out.push(
      `| ${regime} | ${arm} | ${row.seed} | ${pct(row.best)} (${row.bestRound}) | ${pct(row.final)} | ${pct(row.lastMean)} | ${pct(row.maxDrop)} | ${eps(end.extra['privacy.epsilon'])} / ${eps(end.extra['privacy.epsilon_sampled'])} | ${r.draws?.sha256.slice(0, 12) ?? '–'} (${r.draws?.siteRounds ?? '–'}) | ${norm} | ${clipped} | ${r.seconds.toFixed(0)} |`,
    );
  }
  for (const f of failed) out.push(`| ${f} | cut or failed | | | | | | | | | | |`);
  out.push('', '| regime | arm | seeds | best, mean ± sd | final, mean ± sd | mean of last 10, mean ± sd |', '| --- | --- | --- | --- | --- | --- |');
  const regimes = [...new Set(cells.map((c) => c.regime))].sort();
  for (const g of regimes)
    for (const arm of ['clip', 'dp8']) {
      const rs = cells.filter((c) => c.regime === g && c.arm === arm).map((c) => c.row);
      if (rs.length)
        out.push(
          `| ${g} | ${arm} | ${rs.length} | ${meanSd(rs.map((r) => r.best))} | ${meanSd(rs.map((r) => r.final))} | ${meanSd(rs.map((r) => r.lastMean))} |`,
        );
    }
  out.push('', '| regime | seed | same draws | DP − twin: best | final | mean of last 10 |', '| --- | --- | --- | --- | --- | --- |');
  for (const g of regimes) {
    const pairs = [...new Set(cells.filter((c) => c.regime === g).map((c) => c.row.seed))]
      .sort((a, b) => a - b)
      .flatMap((seed) => {
        const dp = cells.find((c) => c.regime === g && c.arm === 'dp8' && c.row.seed === seed);
        const tw = cells.find((c) => c.regime === g && c.arm === 'clip' && c.row.seed === seed);
        return dp && tw ? [{ seed, dp, tw }] : [];
      });
    const d = (k: 'best' | 'final' | 'lastMean'): number[] => pairs.map((p) => p.dp.row[k] - p.tw.row[k]);
    for (const p of pairs)
      out.push(
        `| ${g} | ${p.seed} | ${p.dp.r.draws && p.dp.r.draws.sha256 === p.tw.r.draws?.sha256 ? 'yes' : '**no**'} | ${pts(p.dp.row.best - p.tw.row.best)} | ${pts(p.dp.row.final - p.tw.row.final)} | ${pts(p.dp.row.lastMean - p.tw.row.lastMean)} |`,
      );
    if (pairs.length === 0) continue;
    out.push(
      `| ${g} | **mean ± sd** (${pairs.length} pairs) | | ${pairedSummary(d('best'))} | ${pairedSummary(d('final'))} | ${pairedSummary(d('lastMean'))} |`,
    );
  }
  return `${out.join('\n')}\n`;
}

async function main(): Promise<void> {
  const cmd = new Command().option('--last <n>', 'mean over the last n rounds', '10').argument('<files...>').parse();
  const last = Number(cmd.opts<{ last: string }>().last);
  const cells: Cell[] = [];
  const failed: string[] = [];
  for (const file of cmd.args) {
    const r = await readCellOut<SampledCellResult>(file);
    const m = r?.ok && r.curves[0] ? /^(x22|x24|x24a)-(.+)-(dp8|clip)$/.exec(r.cell.config) : null;
    if (!r || !m) {
      failed.push(`${file}${r?.error ? `: ${r.error}` : ''}`);
      continue;
    }
    // Run 24a's arms (adaptive clipping) pair among themselves, beside run 22's of the same regime (run 24's regimes
    // have names of their own).
    const regime = m[1] === 'x24a' ? `${m[2]} (${m[1]})` : m[2];
    cells.push({ regime, arm: m[3], row: seedRow(r.cell.config, r.cell.seed, r.curves[0], r.cell.rounds, last), r });
  }
  process.stdout.write(run22Table(cells, failed));
}

if (require.main === module) void main();
