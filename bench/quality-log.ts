// Curves of quality cells cut short (bench/quality-run9.sh's drivers are ended by `timeout`; a cell's result JSON
// is written only when it finishes): each cell logs one line per committed round (bench/quality-cell.ts),
//   <split>/<config>/<seed> [<federation>] round <r>: accuracy <a>%, loss <l>[, val loss <vl>, val accuracy <va>%]
// and this reads those lines back into the driver's JSON layout, marked partial, with the same tables:
//   node dist/bench/quality-log.js --out curves.json q9a.log q9b.log …
import { promises as fs } from 'node:fs';
import { summarise, table, stoppingTable } from './quality';
import type { CellResult, QualityCell, RoundPoint, SplitName } from './quality-cell';

const LINE = /^(\S+)\/(\S+)\/(\d+) \[(\d+)\] round (\d+): accuracy ([\d.]+)%, loss (\S+?)(?:, val loss ([\d.]+), val accuracy ([\d.]+)%)?$/;

/** One CellResult per (split, config, seed) seen in `text`, curves in round order; `cell` carries what the log says. */
export function curvesFromLog(text: string): (CellResult & { partial: true })[] {
  const byCell = new Map<string, { split: string; config: string; seed: number; curves: Map<number, Map<number, RoundPoint>> }>();
  for (const line of text.split('\n')) {
    const m = LINE.exec(line.trim());
    if (!m) continue;
    const key = `${m[1]}/${m[2]}/${m[3]}`;
    const c = byCell.get(key) ?? { split: m[1], config: m[2], seed: Number(m[3]), curves: new Map<number, Map<number, RoundPoint>>() };
    byCell.set(key, c);
    const fed = c.curves.get(Number(m[4])) ?? new Map<number, RoundPoint>();
    c.curves.set(Number(m[4]), fed);
    const extra: Record<string, number> = m[8] !== undefined ? { 'eval.loss': Number(m[8]), 'eval.accuracy': Number(m[9]) / 100 } : {};
    fed.set(Number(m[5]), { round: Number(m[5]), accuracy: Number(m[6]) / 100, loss: Number(m[7]), extra });
  }
  return [...byCell.values()].map((c) => ({
    // Only what the log tells; the run's settings are in its driver's command line (bench/QUALITY.md).
    cell: { split: c.split as SplitName, config: c.config, seed: c.seed } as QualityCell,
    ok: true,
    partial: true,
    curves: [...c.curves.keys()].sort((a, b) => a - b).map((k) => [...c.curves.get(k)!.values()].sort((a, b) => a.round - b.round)),
    backend: '',
    seconds: 0,
  }));
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const i = args.indexOf('--out');
  const out = i >= 0 ? args.splice(i, 2)[1] : undefined;
  const cells = curvesFromLog((await Promise.all(args.map((f) => fs.readFile(f, 'utf8')))).join('\n'));
  const summary = summarise(cells);
  if (out) await fs.writeFile(out, JSON.stringify({ meta: { fromLogs: args.map((a) => a.split('/').pop()) }, summary, cells }, null, 1));
  console.log(`${table(summary)}\n\n${stoppingTable(summary)}`);
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
