// Run 17's table (bench/QUALITY.md, "Run 17"): for each configuration and seed of the quality drivers' JSON (or the
// curves quality-log.ts read back from a cut run's logs), the best held-out accuracy and its round, the final, the
// mean of the last `--last` rounds, the largest drop between consecutive scored rounds after round 6 and in the
// run's second half, the members'
// mean update norm early and late, and the sampled Gaussian's ε; then the mean and spread over seeds, and each DP
// arm minus its noiseless twin, seed by seed (the same cohorts in the same rounds).
//   node dist/bench/quality-run17-table.js --last 10 --twin xd17-dp8=xd17-clip q17a.json q17b.json
import { promises as fs } from 'node:fs';
import { Command } from 'commander';
import { summariseCurve } from './quality';
import type { CellResult, RoundPoint } from './quality-cell';

export interface SeedRow {
  readonly config: string;
  readonly seed: number;
  readonly best: number;
  readonly bestRound: number;
  readonly final: number;
  readonly finalRound: number;
  /** Mean accuracy over the scored rounds among the last `last` rounds of the run (NaN when none was scored). */
  readonly lastMean: number;
  readonly maxDrop: number;
  /** The largest drop between consecutive scored rounds in the run's second half (rounds > rounds/2). */
  readonly maxDropLate: number;
  readonly epsilon?: number;
  readonly normEarly?: number;
  readonly normLate?: number;
}

/** The row of one curve; `rounds` is the run's length (a cut curve's "last rounds" are those it did not reach). */
export function seedRow(config: string, seed: number, curve: readonly RoundPoint[], rounds: number, last: number): SeedRow {
  const s = summariseCurve(curve);
  const trained = curve.filter((p) => p.round >= 1);
  const tail = trained.filter((p) => p.round > rounds - last);
  const norms = trained.map((p) => p.extra['clients.update_norm']).filter((x): x is number => typeof x === 'number');
  const third = Math.max(1, Math.floor(norms.length / 3));
  const mean = (xs: readonly number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  const lastPoint = trained[trained.length - 1];
  return {
    config,
    seed,
    best: s.best,
    bestRound: s.bestRound,
    final: s.final,
    finalRound: lastPoint?.round ?? NaN,
    lastMean: mean(tail.map((p) => p.accuracy)),
    maxDrop: s.maxDrop,
    maxDropLate: summariseCurve(curve, Math.floor(rounds / 2)).maxDrop,
    epsilon: lastPoint?.extra['privacy.epsilon_sampled'],
    normEarly: norms.length ? mean(norms.slice(0, third)) : undefined,
    normLate: norms.length ? mean(norms.slice(-third)) : undefined,
  };
}

const pct = (x: number): string => (Number.isFinite(x) ? (100 * x).toFixed(1) : '–');
const pts = (x: number): string => (Number.isFinite(x) ? `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}` : '–');
const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const spread = (xs: readonly number[]): number => Math.max(...xs) - Math.min(...xs);

/** The markdown: per seed, mean and spread per configuration; then each twin pair's differences per seed. */
export function run17Table(rows: readonly SeedRow[], twins: readonly [string, string][]): string {
  const configs = [...new Set(rows.map((r) => r.config))];
  const out = [
    '| configuration | seed | best, % (round) | final, % (round) | mean of last rounds, % | largest drop after round 6, points | in the second half | members’ mean update norm, first / last third of scored rounds | ε (q = m/N) |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const c of configs) {
    const rs = rows.filter((r) => r.config === c).sort((a, b) => a.seed - b.seed);
    for (const r of rs)
      out.push(
        `| ${c} | ${r.seed} | ${pct(r.best)} (${r.bestRound}) | ${pct(r.final)} (${r.finalRound}) | ${pct(r.lastMean)} | ${pct(r.maxDrop)} | ${pct(r.maxDropLate)} | ${r.normEarly?.toFixed(3) ?? '–'} / ${r.normLate?.toFixed(3) ?? '–'} | ${r.epsilon?.toFixed(2) ?? '–'} |`,
      );
    if (rs.length > 1) {
      const f = (g: (r: SeedRow) => number): string => `${pct(mean(rs.map(g)))} (spread ${pct(spread(rs.map(g)))})`;
      out.push(
        `| ${c} | **mean** | ${f((r) => r.best)} | ${f((r) => r.final)} | ${f((r) => r.lastMean)} | max ${pct(Math.max(...rs.map((r) => r.maxDrop)))} | | |`,
      );
    }
  }
  for (const [dp, plain] of twins) {
    const seeds = rows.filter((r) => r.config === dp).map((r) => r.seed);
    const pairs = seeds
      .map((s) => [rows.find((r) => r.config === dp && r.seed === s), rows.find((r) => r.config === plain && r.seed === s)] as const)
      .filter((p): p is readonly [SeedRow, SeedRow] => p[0] !== undefined && p[1] !== undefined)
      .sort((a, b) => a[0].seed - b[0].seed);
    if (pairs.length === 0) continue;
    out.push('', `${dp} − ${plain}, points (the same cohorts per seed):`, '', '| seed | best | final | mean of last rounds |', '|---|---|---|---|');
    for (const [a, b] of pairs) out.push(`| ${a.seed} | ${pts(a.best - b.best)} | ${pts(a.final - b.final)} | ${pts(a.lastMean - b.lastMean)} |`);
    const d = (g: (r: SeedRow) => number): string => pts(mean(pairs.map(([a, b]) => g(a) - g(b))));
    out.push(`| **mean** | ${d((r) => r.best)} | ${d((r) => r.final)} | ${d((r) => r.lastMean)} |`);
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const cmd = new Command('quality-run17-table')
    .option('--rounds <n>', "the run's rounds", '150')
    .option('--last <n>', 'mean over the last n rounds', '10')
    .option('--twin <pairs>', 'DP arm=its noiseless twin, comma-separated', 'xd17-dp8=xd17-clip')
    .argument('<json...>', "the drivers' JSON (quality.ts) or quality-log.ts's curves JSON")
    .parse();
  const o = cmd.opts<{ rounds: string; last: string; twin: string }>();
  const rows: SeedRow[] = [];
  const seen = new Set<string>();
  for (const f of cmd.args) {
    const cells = (JSON.parse(await fs.readFile(f, 'utf8')) as { cells: CellResult[] }).cells;
    for (const c of cells) {
      const key = `${c.cell.config}/${c.cell.seed}`;
      // A cell finished in a driver's JSON wins over the same cell read back from the logs.
      if (!c.ok || c.curves.length === 0 || seen.has(key)) continue;
      seen.add(key);
      rows.push(seedRow(c.cell.config, c.cell.seed, c.curves[0], Number(o.rounds), Number(o.last)));
    }
  }
  const twins = o.twin.split(',').map((t) => t.split('=') as [string, string]);
  console.log(run17Table(rows, twins));
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
