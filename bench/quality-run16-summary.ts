// Run 16's table (bench/QUALITY.md "Run 16") from the drivers' logs: per cell, the best held-out accuracy and its
// round, the final, and the largest drop between consecutive scored rounds after round 6, 60 and 120 (the first
// 20% of a 600-round run, as round 6 is of 30), with the round it lands in; per split and configuration, the mean
// best against the 3-seed centralized best (runs 14b-14c). Reads the logs, not the JSON, so a cell cut by the
// time limit still counts its scored rounds (the log rounds to 0.1 point; 1 of 400 e-mails is 0.25).
//   node dist/bench/quality-run16-summary.js /tmp/q16/*.log
import { readFileSync } from 'node:fs';

/** 3-seed centralized best held-out accuracy per split, % (bench/QUALITY.md runs 10, 14b, 14c). */
export const CENTRALIZED_BEST: Readonly<Record<string, number>> = { 'dirichlet-0.5': 93.3, 'dirichlet-0.1': 92.3, groups: 92.6 };
const AFTER = [6, 60, 120] as const;

export interface CellCurve {
  readonly split: string;
  readonly config: string;
  readonly seed: number;
  readonly points: { round: number; accuracy: number }[];
}

export function parseLogs(text: string): CellCurve[] {
  const cells = new Map<string, CellCurve>();
  for (const line of text.split('\n')) {
    const m = /^(\S+)\/(\S+)\/(\d+) \[0\] round (\d+): accuracy ([\d.]+)%/.exec(line);
    if (!m) continue;
    const key = `${m[1]}/${m[2]}/${m[3]}`;
    const c = cells.get(key) ?? { split: m[1], config: m[2], seed: Number(m[3]), points: [] };
    c.points.push({ round: Number(m[4]), accuracy: Number(m[5]) });
    cells.set(key, c);
  }
  for (const c of cells.values()) c.points.sort((a, b) => a.round - b.round);
  return [...cells.values()].sort((a, b) => (a.split + a.config + a.seed < b.split + b.config + b.seed ? -1 : 1));
}

/** Largest fall from one scored round to the next, counted where the later round is > `after`, and that round. */
export function largestDrop(points: readonly { round: number; accuracy: number }[], after: number): { drop: number; round: number } {
  let r = { drop: 0, round: 0 };
  for (let i = 1; i < points.length; i++) {
    const d = points[i - 1].accuracy - points[i].accuracy;
    if (points[i].round > after && d > r.drop) r = { drop: d, round: points[i].round };
  }
  return r;
}

function main(files: readonly string[]): void {
  const cells = parseLogs(files.map((f) => readFileSync(f, 'utf8')).join('\n'));
  const groups = new Map<string, CellCurve[]>();
  for (const c of cells) {
    const trained = c.points.filter((p) => p.round >= 1);
    if (!trained.length) continue;
    const best = trained.reduce((a, b) => (b.accuracy > a.accuracy ? b : a));
    const last = trained[trained.length - 1];
    const drops = AFTER.map((a) => largestDrop(trained, a)).map((d, i) => `>${AFTER[i]}: ${d.drop.toFixed(1)} (${d.round})`);
    console.log(
      `${c.split} ${c.config} seed ${c.seed}: best ${best.accuracy.toFixed(1)} (round ${best.round}), last ${last.accuracy.toFixed(1)} (round ${last.round}), drops ${drops.join(', ')}`,
    );
    const k = `${c.split} ${c.config}`;
    groups.set(k, [...(groups.get(k) ?? []), c]);
  }
  for (const [k, cs] of groups) {
    const bests = cs.map((c) => Math.max(...c.points.filter((p) => p.round >= 1).map((p) => p.accuracy)));
    const mean = bests.reduce((a, b) => a + b, 0) / bests.length;
    const ceil = CENTRALIZED_BEST[k.split(' ')[0]];
    const worst = Math.max(...cs.map((c) => largestDrop(c.points, 120).drop));
    console.log(
      `== ${k}: ${cs.length} seeds, mean best ${mean.toFixed(2)} = ${((100 * mean) / ceil).toFixed(1)}% of ${ceil}; worst drop after round 120: ${worst.toFixed(1)}`,
    );
  }
}

if (require.main === module) main(process.argv.slice(2));
