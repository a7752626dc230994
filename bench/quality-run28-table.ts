// Run 28's table (bench/QUALITY.md): simulate's own output of each cell (bench/quality-run28.sh writes
// <arm>-<seed>[-<ranks>].txt), read up to a common round, since a cell cut by its deadline has fewer rounds:
//   node dist/bench/quality-run28-table.js --rounds 17 [--default-ranks 4,16,16,16,16] [--json out.json] q28/*.txt
// Per arm (the file name without its seed): best held-out accuracy over rounds 1..N (mean ± sd over seeds, each
// seed's best and its round), accuracy at round N, the largest round-to-round loss after round 6, s a round.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { summariseCurve } from './quality';

const ROUND = /^round (\d+)\/\d+: (\d+) updates, .*held-out loss ([\d.]+), accuracy ([\d.]+)% → v\d+ \(([\d.]+) s\)$/;

export interface Run28Cell {
  readonly arm: string;
  readonly seed: number;
  /** Held-out accuracy (%) by round, rounds 1..N only. */
  readonly accuracy: readonly number[];
  readonly seconds: readonly number[];
}

/** A cell from its file name (arm-seed[-ranks].txt) and simulate's lines, cut at `rounds`; undefined short of it. */
export function run28Cell(file: string, text: string, rounds: number, defaultRanks = '4,16,16,16,16'): Run28Cell | undefined {
  const m = /^(\w+)-(\d+)(?:-([\d_]+))?\.txt$/.exec(path.basename(file));
  if (!m) throw new Error(`${path.basename(file)} is not <arm>-<seed>[-<ranks>].txt`);
  const byRound = new Map<number, { acc: number; s: number }>();
  for (const line of text.split('\n')) {
    const r = ROUND.exec(line.trim());
    if (r) byRound.set(Number(r[1]), { acc: Number(r[4]), s: Number(r[5]) });
  }
  const got = Array.from({ length: rounds }, (_, i) => byRound.get(i + 1));
  if (got.some((g) => g === undefined)) return undefined;
  // A file name without ranks ran at Q28_RANKS (quality-run28.sh's default unless the call set it: --default-ranks).
  const arm = `${m[1]}, ranks ${m[3] ? m[3].replace(/_/g, ',') : defaultRanks}`;
  return { arm, seed: Number(m[2]), accuracy: got.map((g) => g!.acc), seconds: got.map((g) => g!.s) };
}

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: readonly number[]): number => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));
const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export interface Run28Row {
  readonly arm: string;
  readonly seeds: number[];
  readonly best: { mean: number; sd: number; perSeed: { seed: number; best: number; round: number }[] };
  readonly atLast: { mean: number; sd: number };
  /** Largest accuracy loss from one round to the next after round 6, worst over seeds. */
  readonly worstDropAfter6: number;
  readonly medianSeconds: number;
}

export function run28Rows(cells: readonly Run28Cell[]): Run28Row[] {
  const arms = [...new Set(cells.map((c) => c.arm))];
  return arms.map((arm) => {
    const cs = cells.filter((c) => c.arm === arm).sort((a, b) => a.seed - b.seed);
    // One curve's best, its round, its last figure and its worst drop after round 6: the benchmark's own summary.
    const curves = cs.map((c) => summariseCurve(c.accuracy.map((accuracy, i) => ({ round: i + 1, accuracy }))));
    const perSeed = cs.map((c, k) => ({ seed: c.seed, best: curves[k].best, round: curves[k].bestRound }));
    const last = curves.map((c) => c.final);
    return {
      arm,
      seeds: cs.map((c) => c.seed),
      best: { mean: mean(perSeed.map((p) => p.best)), sd: sd(perSeed.map((p) => p.best)), perSeed },
      atLast: { mean: mean(last), sd: sd(last) },
      worstDropAfter6: Math.max(...curves.map((c) => c.maxDrop)),
      medianSeconds: median(cs.flatMap((c) => c.seconds)),
    };
  });
}

export function run28Table(rows: readonly Run28Row[], rounds: number): string {
  const f = (x: number): string => x.toFixed(1);
  return [
    `| arm | seeds | best in rounds 1-${rounds}, mean ± sd | each seed: best (round) | round ${rounds}, mean ± sd | worst drop after round 6 | s a round (median) |`,
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.arm} | ${r.seeds.join(', ')} | ${f(r.best.mean)} ± ${f(r.best.sd)} | ${r.best.perSeed.map((p) => `${f(p.best)} (${p.round})`).join(', ')} | ` +
        `${f(r.atLast.mean)} ± ${f(r.atLast.sd)} | ${f(r.worstDropAfter6)} | ${f(r.medianSeconds)} |`,
    ),
  ].join('\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const take = (flag: string): string | undefined => {
    const i = args.indexOf(flag);
    return i >= 0 ? args.splice(i, 2)[1] : undefined;
  };
  const rounds = Number(take('--rounds') ?? 20);
  const json = take('--json');
  const defaultRanks = take('--default-ranks');
  const cells: Run28Cell[] = [];
  for (const file of args) {
    const c = run28Cell(file, await fs.readFile(file, 'utf8'), rounds, defaultRanks);
    if (c) cells.push(c);
    else console.error(`${path.basename(file)}: fewer than ${rounds} rounds, left out`);
  }
  const rows = run28Rows(cells);
  if (json) await fs.writeFile(json, JSON.stringify({ rounds, rows, cells }, null, 1));
  console.log(run28Table(rows, rounds));
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
