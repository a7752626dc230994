// Run 25's table (bench/QUALITY.md "Run 25"): DP at ε = 8 with adaptive clipping (x24a-e4m50-dp8) against one or
// both of two noiseless arms that drew the same cohorts: its own twin (x24a-e4m50-clip, C adapting alike) and run 22's fixed-C
// twin (x22-e4m50-clip, C 2), the stronger non-private recipe in run 24's call 3. Per seed the best, final and mean of
// the last 10 held-out scores of each arm; then the paired differences with a 95% t interval.
//   node dist/bench/quality-run25-table.js --last 10 cell-*.out
// --dp names another DP arm scored against the same twins (run 26's pulled arms, built at aab39c2: --dp x26a2-e4m50-dp8).
// Each input is a cell process's stdout (its result is the last line); a cut cell has none and is listed.
import { Command } from 'commander';
import type { SampledCellResult } from './quality-sampled-cell';
import { seedRow, type SeedRow } from './quality-run17-table';
import { readCellOut } from './quality-run21-table';
import { pairedSummary } from './quality-run22-table';

/** The three arms by config name, in the table's order. */
export const RUN25_ARMS = { dp: 'x24a-e4m50-dp8', twin: 'x24a-e4m50-clip', fixed: 'x22-e4m50-clip' } as const;
type Arm = keyof typeof RUN25_ARMS;

const pct = (x: number): string => (Number.isFinite(x) ? (100 * x).toFixed(1) : '–');
const pts = (x: number): string => (Number.isFinite(x) ? `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}` : '–');

interface Seed {
  readonly seed: number;
  readonly rows: Readonly<Partial<Record<Arm, SeedRow>>> & { readonly dp: SeedRow };
  /** The arms of the seed observed the same draws (their digests agree). */
  readonly sameDraws: boolean;
}

/** The markdown: per seed the arms run and DP's differences from each twin; then the paired summaries. */
export function run25Table(seeds: readonly Seed[], unpaired: readonly string[], arms: Readonly<Record<Arm, string>> = RUN25_ARMS): string {
  const out = [
    '| seed | DP best (round) | own twin best | fixed-C twin best | DP − own twin: best | final | DP − fixed-C twin: best | final | same draws |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  const diff = (s: Seed, a: 'twin' | 'fixed', k: 'best' | 'final' | 'lastMean'): number => {
    const t = s.rows[a];
    return t ? s.rows.dp[k] - t[k] : NaN;
  };
  for (const s of [...seeds].sort((a, b) => a.seed - b.seed)) {
    const r = s.rows;
    out.push(
      `| ${s.seed} | ${pct(r.dp.best)} (${r.dp.bestRound}) | ${pct(r.twin?.best ?? NaN)} | ${pct(r.fixed?.best ?? NaN)} | ${pts(diff(s, 'twin', 'best'))} | ${pts(diff(s, 'twin', 'final'))} | ${pts(diff(s, 'fixed', 'best'))} | ${pts(diff(s, 'fixed', 'final'))} | ${s.sameDraws ? 'yes' : '**no**'} |`,
    );
  }
  for (const u of unpaired) out.push(`| ${u} | | | | | | | | |`);
  const ms = (xs: readonly number[]): string => {
    const mu = xs.reduce((x, y) => x + y, 0) / xs.length;
    return `${pct(mu)} ± ${pct(Math.sqrt(xs.reduce((x, y) => x + (y - mu) ** 2, 0) / Math.max(1, xs.length - 1)))}`;
  };
  out.push('', '| arm | seeds | best, mean ± sd | final, mean ± sd |', '| --- | --- | --- | --- |');
  for (const a of Object.keys(RUN25_ARMS) as Arm[]) {
    const rows = seeds.flatMap((s) => (s.rows[a] ? [s.rows[a]] : []));
    if (rows.length) out.push(`| \`${arms[a]}\` | ${rows.length} | ${ms(rows.map((r) => r.best))} | ${ms(rows.map((r) => r.final))} |`);
  }
  out.push('', '| DP − | pairs | best | final | mean of last 10 |', '| --- | --- | --- | --- | --- |');
  for (const a of ['twin', 'fixed'] as const) {
    const paired = seeds.filter((s) => s.rows[a]);
    if (paired.length > 1)
      out.push(
        `| ${a === 'twin' ? 'its own twin' : 'the fixed-C twin'} | ${paired.length} | ${pairedSummary(paired.map((s) => diff(s, a, 'best')))} | ${pairedSummary(paired.map((s) => diff(s, a, 'final')))} | ${pairedSummary(paired.map((s) => diff(s, a, 'lastMean')))} |`,
      );
  }
  return `${out.join('\n')}\n`;
}

async function main(): Promise<void> {
  const cmd = new Command()
    .option('--last <n>', 'mean over the last n rounds', '10')
    .option('--dp <config>', 'the DP arm (run 26 at aab39c2: x26a2-e4m50-dp8, x26a6-e4m50-dp8)', RUN25_ARMS.dp)
    .argument('<files...>')
    .parse();
  const opts = cmd.opts<{ last: string; dp: string }>();
  const last = Number(opts.last);
  const arms: Record<Arm, string> = { ...RUN25_ARMS, dp: opts.dp };
  const bySeed = new Map<number, Partial<Record<Arm, { row: SeedRow; draws?: string }>>>();
  const unpaired: string[] = [];
  for (const file of cmd.args) {
    const r = await readCellOut<SampledCellResult>(file);
    if (!r || !r.ok || !r.curves[0]) {
      unpaired.push(`${file}: cut or failed`);
      continue;
    }
    const arm = (Object.keys(arms) as Arm[]).find((a) => r.cell.config === arms[a]);
    if (!arm) continue; // another table's arm run in the same call
    const s = bySeed.get(r.cell.seed) ?? {};
    s[arm] = { row: seedRow(r.cell.config, r.cell.seed, r.curves[0], r.cell.rounds, last), draws: r.draws?.sha256 };
    bySeed.set(r.cell.seed, s);
  }
  const seeds: Seed[] = [];
  for (const [seed, s] of bySeed) {
    if (!s.dp || (!s.twin && !s.fixed)) {
      unpaired.push(`seed ${seed}: only ${Object.keys(s).join(', ')}`);
      continue;
    }
    const draws = new Set(Object.values(s).map((c) => c.draws));
    seeds.push({ seed, rows: { dp: s.dp.row, twin: s.twin?.row, fixed: s.fixed?.row }, sameDraws: draws.size === 1 && !draws.has(undefined) });
  }
  process.stdout.write(run25Table(seeds, unpaired, arms));
}

if (require.main === module) void main();
