// The held-out curve of a finished `npm run demo` run directory, from its signed manifests: each scored version's
// round, accuracy, loss and commit time, and the figures bench/QUALITY.md's goals read: the best accuracy and its
// round, the final one, and the largest drop between consecutive scores after round 6.
//   node dist/bench/demo-curve.js runs/demo-<time>  > curve.json
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

interface Point {
  readonly round: number;
  readonly accuracy: number;
  readonly loss: number;
  readonly createdAt: string;
}

async function main(runDir: string): Promise<void> {
  const dir = path.join(runDir, 'versions');
  const points: Point[] = [];
  for (const v of (await fs.readdir(dir)).sort()) {
    const m = JSON.parse(await fs.readFile(path.join(dir, v, 'manifest.json'), 'utf8')) as {
      round: number;
      createdAt: string;
      metrics: Record<string, number>;
    };
    const accuracy = m.metrics['heldout.eval_accuracy'];
    if (accuracy !== undefined) points.push({ round: m.round, accuracy, loss: m.metrics['heldout.eval_loss'], createdAt: m.createdAt });
  }
  const best = points.reduce((a, b) => (b.accuracy > a.accuracy ? b : a));
  let drop = { points: 0, round: 0 };
  for (let i = 1; i < points.length; i++) {
    const d = points[i - 1].accuracy - points[i].accuracy;
    if (points[i].round > 6 && d > drop.points) drop = { points: d, round: points[i].round };
  }
  const pct = (x: number): number => Math.round(1e4 * x) / 100;
  const summary = {
    scored: points.length,
    best: { accuracy: pct(best.accuracy), round: best.round },
    final: { accuracy: pct(points[points.length - 1].accuracy), round: points[points.length - 1].round },
    largestDropAfterRound6: { points: pct(drop.points), round: drop.round },
    secondsRound0ToLast: (Date.parse(points[points.length - 1].createdAt) - Date.parse(points[0].createdAt)) / 1000,
  };
  console.log(JSON.stringify({ summary, points }, null, 1));
}

main(process.argv[2] ?? '').catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
