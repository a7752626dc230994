// Run 21's table (bench/QUALITY.md "Run 21"): for each cell the held-out accuracy summary (seedRow, run 17's
// definitions) and ε as the product's manifests stamp it (privacy.epsilon, charged at q) beside the accountant's
// figure at the same q, z and rounds (privacy.epsilon_sampled); then the mean and spread over seeds per configuration.
//   node dist/bench/quality-run21-table.js --rounds 150 --last 10 cell-42.out cell-43.out …
// Each input is a cell process's stdout (its CellResult is the last line); a cell cut short has none and is listed.
import { promises as fs } from 'node:fs';
import { Command } from 'commander';
import type { CellResult } from './quality-cell';
import { seedRow } from './quality-run17-table';

const pct = (x: number | undefined): string => (x !== undefined && Number.isFinite(x) ? (100 * x).toFixed(1) : '–');
const eps = (x: number | undefined): string => (x !== undefined && Number.isFinite(x) ? x.toFixed(2) : '–');
const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const spread = (xs: readonly number[]): number => Math.max(...xs) - Math.min(...xs);

/** A cell process's result: the last line of its stdout (undefined when the cell was cut before printing one). */
export async function readCellOut<R>(file: string): Promise<R | undefined> {
  const text = (await fs.readFile(file, 'utf8')).trim();
  try {
    return JSON.parse(text.split('\n').pop() ?? '') as R;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const cmd = new Command()
    .option('--rounds <n>', 'the run length', '150')
    .option('--last <n>', 'mean over the last n rounds', '10')
    .argument('<files...>')
    .parse();
  const o = cmd.opts<{ rounds: string; last: string }>();
  const rounds = Number(o.rounds);
  const last = Number(o.last);
  const lines = [
    '| arm | seed | best, % (round) | final, % (round) | mean of the last 10 | largest drop after round 6 | ε in the manifest (q charged) | accountant at q | seconds |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  const byConfig = new Map<string, { best: number[]; final: number[]; lastMean: number[] }>();
  for (const file of cmd.args) {
    const r = await readCellOut<CellResult>(file);
    if (!r || !r.ok || !r.curves[0]) {
      lines.push(`| ${file} | | cut or failed${r?.error ? `: ${r.error}` : ''} | | | | | | |`);
      continue;
    }
    const curve = r.curves[0];
    const row = seedRow(r.cell.config, r.cell.seed, curve, rounds, last);
    const end = curve[curve.length - 1];
    lines.push(
      `| \`${row.config}\` | ${row.seed} | ${pct(row.best)} (${row.bestRound}) | ${pct(row.final)} (${row.finalRound}) | ${pct(row.lastMean)} | ${pct(row.maxDrop)} | ${eps(end.extra['privacy.epsilon'])} | ${eps(end.extra['privacy.epsilon_sampled'])} | ${r.seconds.toFixed(0)} |`,
    );
    const s = byConfig.get(row.config) ?? { best: [], final: [], lastMean: [] };
    s.best.push(row.best);
    s.final.push(row.final);
    s.lastMean.push(row.lastMean);
    byConfig.set(row.config, s);
  }
  for (const [config, s] of byConfig)
    lines.push(
      `| \`${config}\` | **mean** (${s.best.length}) | **${pct(mean(s.best))}** (spread ${pct(spread(s.best))}) | **${pct(mean(s.final))}** (spread ${pct(spread(s.final))}) | **${pct(mean(s.lastMean))}** | | | | |`,
    );
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (require.main === module) void main();
