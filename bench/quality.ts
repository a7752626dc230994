// The learning-quality benchmark (issue 11; results in bench/QUALITY.md): on the SpamAssassin task with the pooled
// held-out test set, each configuration (bench/quality-configs.ts) on each split and seed, as a real federation
// (bench/quality-cell.ts, one child process per cell, `--parallel` at a time). Writes every cell's per-round curve
// and a summary (mean and range over seeds) as JSON after each cell, so a run cut short keeps what it finished.
//   node dist/bench/quality.js --splits dirichlet-0.5,dirichlet-0.1,groups --seeds 42,43,44 \
//        --configs centralized,local,fedavg --rounds 30 --parallel 8 --out bench/out/quality.json
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { SPLITS, type CellResult, type QualityCell, type SplitName } from './quality-cell';
import { QUALITY_CONFIGS } from './quality-configs';

export interface CurveSummary {
  /** Best held-out accuracy over rounds ≥ 1, the first round reaching it, the last round's accuracy. */
  readonly best: number;
  readonly bestRound: number;
  readonly final: number;
  /** Largest drop in accuracy from one round to the next after `swingAfter` (0 when it never drops). */
  readonly maxDrop: number;
}

export function summariseCurve(points: readonly { round: number; accuracy: number }[], swingAfter = 6): CurveSummary {
  const trained = points.filter((p) => p.round >= 1 && Number.isFinite(p.accuracy));
  if (trained.length === 0) return { best: NaN, bestRound: NaN, final: NaN, maxDrop: NaN };
  let best = trained[0];
  for (const p of trained) if (p.accuracy > best.accuracy) best = p;
  let maxDrop = 0;
  for (let i = 1; i < trained.length; i++) {
    if (trained[i].round > swingAfter) maxDrop = Math.max(maxDrop, trained[i - 1].accuracy - trained[i].accuracy);
  }
  return { best: best.accuracy, bestRound: best.round, final: trained[trained.length - 1].accuracy, maxDrop };
}

interface Stat {
  readonly mean: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}
const stat = (xs: number[]): Stat => {
  const ok = xs.filter(Number.isFinite);
  return { mean: ok.reduce((a, b) => a + b, 0) / ok.length, min: Math.min(...ok), max: Math.max(...ok), n: ok.length };
};

export interface ConfigSummary {
  readonly split: string;
  readonly config: string;
  readonly seeds: number;
  readonly failed: string[];
  readonly best: Stat;
  readonly bestRound: Stat;
  readonly final: Stat;
  readonly maxDrop: Stat;
  /** Local-only: each site's best accuracy, averaged over seeds (index = site). */
  readonly perSiteBest?: number[];
  /** Last round's privacy figure where the configuration records one. */
  readonly epsilon?: Stat;
}

export function summarise(results: readonly CellResult[]): ConfigSummary[] {
  const keys = [...new Set(results.map((r) => `${r.cell.split}\u0000${r.cell.config}`))];
  return keys.map((k) => {
    const [split, config] = k.split('\u0000');
    const rs = results.filter((r) => r.cell.split === split && r.cell.config === config);
    const ok = rs.filter((r) => r.ok && r.curves.length > 0);
    // A local-only cell has one curve per site: the cell's figure is the mean over sites of each site's figure.
    const per = ok.map((r) => r.curves.map((c) => summariseCurve(c)));
    const meanOf = (f: (s: CurveSummary) => number): number[] => per.map((ss) => ss.reduce((a, s) => a + f(s), 0) / ss.length);
    const nSites = Math.max(0, ...per.map((ss) => ss.length));
    const eps = ok.map((r) => r.curves[0][r.curves[0].length - 1]?.extra['privacy.epsilon']).filter((x): x is number => typeof x === 'number');
    return {
      split,
      config,
      seeds: ok.length,
      failed: rs.filter((r) => !r.ok).map((r) => `seed ${r.cell.seed}: ${r.error}`),
      best: stat(meanOf((s) => s.best)),
      bestRound: stat(meanOf((s) => s.bestRound)),
      final: stat(meanOf((s) => s.final)),
      maxDrop: stat(meanOf((s) => s.maxDrop)),
      perSiteBest: nSites > 1 ? Array.from({ length: nSites }, (_, i) => stat(per.map((ss) => ss[i]?.best ?? NaN)).mean) : undefined,
      epsilon: eps.length > 0 ? stat(eps) : undefined,
    };
  });
}

const pct = (x: number): string => (Number.isFinite(x) ? (100 * x).toFixed(1) : '–');
const range = (s: Stat): string => (s.n > 1 ? `${pct(s.mean)} (${pct(s.min)}–${pct(s.max)})` : pct(s.mean));

export function table(summary: readonly ConfigSummary[]): string {
  const lines = [
    '| split | configuration | seeds | best held-out accuracy, % (range) | round of best | final, % | largest drop after round 6, points | ε |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const s of summary) {
    const local = s.perSiteBest ? ` (sites: ${s.perSiteBest.map(pct).join(' / ')})` : '';
    lines.push(
      `| ${s.split} | ${s.config}${local} | ${s.seeds}${s.failed.length ? ` (+${s.failed.length} failed)` : ''} | ${range(s.best)} | ${s.bestRound.n ? s.bestRound.mean.toFixed(1) : '–'} | ${pct(s.final.mean)} | ${s.maxDrop.n ? (100 * s.maxDrop.max).toFixed(1) : '–'} | ${s.epsilon ? s.epsilon.mean.toFixed(2) : ''} |`,
    );
  }
  return lines.join('\n');
}

function runChild(cell: QualityCell): Promise<CellResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'quality-cell.js'), JSON.stringify(cell)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.on('close', (code) => {
      const last = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(last) as CellResult);
      } catch {
        resolve({ cell, ok: false, error: `cell process exited ${code} without a result`, curves: [], backend: '', seconds: 0 });
      }
    });
  });
}

async function main(): Promise<void> {
  const o = new Command('quality')
    .option('--splits <list>', 'splits', Object.keys(SPLITS).join(','))
    .option('--seeds <list>', 'run seeds', '42,43,44')
    .option('--split-seed <n>', 'data split seed (the demo split)', '7')
    .option('--configs <list>', 'configurations (bench/quality-configs.ts)', 'centralized,local,fedavg')
    .option('--rounds <n>', 'rounds', '30')
    .option('--clients <n>', 'sites', '5')
    .option('--local-steps <n>', 'local steps per round', '10')
    .option('--batch-size <n>', 'examples per step', '16')
    .option('--lr <x>', 'client learning rate', '0.002')
    .option('--test-limit <n>', 'held-out e-mails scored each round', '400')
    .option('--parallel <n>', 'cells at a time', '2')
    .option('--out <file>', 'JSON output', 'bench/out/quality.json')
    .parse()
    .opts<Record<string, string>>();
  const cells: QualityCell[] = [];
  for (const split of o.splits.split(',') as SplitName[]) {
    if (!(split in SPLITS)) throw new Error(`unknown split ${split}; known: ${Object.keys(SPLITS).join(', ')}`);
    for (const config of o.configs.split(',')) {
      if (!(config in QUALITY_CONFIGS)) throw new Error(`unknown config ${config}; known: ${Object.keys(QUALITY_CONFIGS).join(', ')}`);
      for (const seed of o.seeds.split(',').map(Number)) {
        cells.push({
          split,
          seed,
          splitSeed: Number(o.splitSeed),
          config,
          rounds: Number(o.rounds),
          clients: Number(o.clients),
          localSteps: Number(o.localSteps),
          batchSize: Number(o.batchSize),
          learningRate: Number(o.lr),
          testLimit: Number(o.testLimit),
        });
      }
    }
  }
  const t0 = Date.now();
  const results: CellResult[] = [];
  const write = async (): Promise<void> => {
    await fs.mkdir(path.dirname(o.out), { recursive: true });
    const summary = summarise(results);
    const meta = {
      date: new Date().toISOString(),
      seconds: (Date.now() - t0) / 1000,
      argv: process.argv.slice(2),
      engine: process.env.FEDTUNE_ENGINE ?? 'off',
    };
    await fs.writeFile(o.out, JSON.stringify({ meta, summary, cells: results }, null, 1));
    await fs.writeFile(o.out.replace(/\.json$/, '') + '.md', `${table(summary)}\n`);
  };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cells.length) {
      const cell = cells[next++];
      const r = await runChild(cell);
      results.push(r);
      console.log(`${cell.split}/${cell.config}/seed ${cell.seed}: ${r.ok ? `done in ${r.seconds.toFixed(0)} s` : `FAILED: ${r.error}`}`);
      await write();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Number(o.parallel)) }, worker));
  await write();
  console.log(table(summarise(results)));
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
