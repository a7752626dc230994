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
import { SPLITS, type CellResult, type QualityCell, type RoundPoint, type SplitName } from './quality-cell';
import { QUALITY_CONFIGS, configTraining } from './quality-configs';
import { earlyStoppingPick, STOP_RULES, type StopPick } from './quality-stopping';

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
  /** Early stopping's pick under each of STOP_RULES (cells with eval.* only). */
  readonly stop?: Partial<Record<keyof typeof STOP_RULES, StopSummary>>;
  /**
   * Federated configurations: the held-out accuracy a run would release (the release pointer under the
   * coordinator's defaults, STOP_RULES.release; else the best seen; mean over seeds) minus each site's local-only
   * best (the split's `local` cells).
   */
  readonly vsLocal?: { readonly released: number; readonly margins: number[] };
}

export interface StopSummary {
  readonly pickedRound: Stat;
  readonly accuracy: Stat;
  /** Best held-out accuracy seen minus the pick's. */
  readonly gap: Stat;
  /** Runs (curves) in which patience ran out before the last round, of `of`. */
  readonly stopped: number;
  readonly of: number;
}

function stopSummary(curves: readonly (readonly RoundPoint[])[], rule: keyof typeof STOP_RULES): StopSummary | undefined {
  const picks = curves.map((c) => earlyStoppingPick(c, STOP_RULES[rule])).filter((p): p is StopPick => p !== undefined);
  if (picks.length === 0) return undefined;
  return {
    pickedRound: stat(picks.map((p) => p.pickedRound)),
    accuracy: stat(picks.map((p) => p.accuracy)),
    gap: stat(picks.map((p) => p.gap)),
    stopped: picks.filter((p) => Number.isFinite(p.stopRound)).length,
    of: picks.length,
  };
}

export function summarise(results: readonly CellResult[]): ConfigSummary[] {
  const keys = [...new Set(results.map((r) => `${r.cell.split}\u0000${r.cell.config}`))];
  const out = keys.map((k): ConfigSummary => {
    const [split, config] = k.split('\u0000');
    const rs = results.filter((r) => r.cell.split === split && r.cell.config === config);
    const ok = rs.filter((r) => r.ok && r.curves.length > 0);
    // A local-only cell has one curve per site: the cell's figure is the mean over sites of each site's figure.
    const per = ok.map((r) => r.curves.map((c) => summariseCurve(c)));
    const meanOf = (f: (s: CurveSummary) => number): number[] => per.map((ss) => ss.reduce((a, s) => a + f(s), 0) / ss.length);
    const nSites = Math.max(0, ...per.map((ss) => ss.length));
    // A cohort cell's ε is the sampled Gaussian's at its rate q (bench/quality-cohort.ts); the manifest's charges q = 1.
    const lastExtra = (r: CellResult): Record<string, number> | undefined => r.curves[0][r.curves[0].length - 1]?.extra;
    const eps = ok.map((r) => lastExtra(r)?.['privacy.epsilon_sampled'] ?? lastExtra(r)?.['privacy.epsilon']).filter((x): x is number => typeof x === 'number');
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
      stop: stops(ok.map((r) => r.curves)),
    };
  });
  return out.map((s) => {
    const local = out.find((l) => l.split === s.split && QUALITY_CONFIGS[l.config]?.mode === 'local' && l.perSiteBest);
    if (!local?.perSiteBest || QUALITY_CONFIGS[s.config]?.mode === 'local' || s.seeds === 0) return s;
    const released = s.stop?.release?.accuracy.mean ?? s.best.mean;
    return { ...s, vsLocal: { released, margins: local.perSiteBest.map((b) => released - b) } };
  });
}

/** Early stopping's picks over a configuration's cells (every curve: one per federated cell, one per local site). */
function stops(cells: readonly (readonly RoundPoint[][])[]): ConfigSummary['stop'] {
  const curves = cells.flat();
  const out: NonNullable<ConfigSummary['stop']> = {};
  for (const rule of Object.keys(STOP_RULES) as (keyof typeof STOP_RULES)[]) {
    const p = stopSummary(curves, rule);
    if (p) out[rule] = p;
  }
  return Object.keys(out).length > 0 ? out : undefined;
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

/** Early stopping's picks and the comparison with local-only training (rows with validation figures or a local baseline). */
export function stoppingTable(summary: readonly ConfigSummary[]): string {
  const pick = (p: StopSummary | undefined): string[] =>
    p
      ? [`${p.pickedRound.mean.toFixed(1)} (${p.stopped}/${p.of} stopped)`, pct(p.accuracy.mean), (100 * p.gap.mean).toFixed(1), (100 * p.gap.max).toFixed(1)]
      : ['–', '–', '–', '–'];
  const lines = [
    '| split | configuration | best seen, % | ES val loss: round picked | its accuracy, % | gap to best, points (mean) | (worst) | ES val accuracy: round picked | its accuracy, % | gap (mean) | (worst) | release (val loss, no stop): round | its accuracy, % | gap (mean) | (worst) | released − local-only best per site, points |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const s of summary) {
    if (!s.stop && !s.vsLocal) continue;
    const vs = s.vsLocal
      ? `${s.vsLocal.margins.map((m) => (100 * m).toFixed(1)).join(' / ')}${s.vsLocal.margins.every((m) => m > 0) ? ' (beats all)' : ''}`
      : '';
    lines.push(
      `| ${s.split} | ${s.config} | ${pct(s.best.mean)} | ${[...pick(s.stop?.loss), ...pick(s.stop?.accuracy), ...pick(s.stop?.release)].join(' | ')} | ${vs} |`,
    );
  }
  return lines.join('\n');
}

const capSteps = (steps: number, cap: number): number => (cap > 0 ? Math.min(steps, cap) : steps);

// The cell processes running now. A driver ended by a signal (the run scripts' `timeout`) ends them too: each
// holds GPU devices and CPU that the next run in the same device call needs.
const children = new Set<ReturnType<typeof spawn>>();
function endChildrenOnSignal(): void {
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      for (const c of children) c.kill('SIGTERM');
      process.exit(sig === 'SIGTERM' ? 143 : 130);
    });
  }
}

function runChild(cell: QualityCell): Promise<CellResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'quality-cell.js'), JSON.stringify(cell)], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.add(child);
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.on('close', (code) => {
      children.delete(child);
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
  endChildrenOnSignal();
  const o = new Command('quality')
    .option('--splits <list>', 'splits', Object.keys(SPLITS).join(','))
    .option('--seeds <list>', 'run seeds', '42,43,44')
    .option('--split-seed <n>', 'data split seed (the demo split)', '7')
    .option('--configs <list>', 'configurations (bench/quality-configs.ts)', 'centralized,local,fedavg')
    .option('--rounds <n>', 'rounds', '30')
    .option('--clients <n>', 'sites', '5')
    .option('--local-steps <n>', 'local steps per round (unless the configuration sets its own)', '10')
    .option('--batch-size <n>', 'examples per step', '16')
    .option('--lr <x>', 'client learning rate (unless the configuration sets its own)', '0.002')
    .option('--test-limit <n>', 'held-out e-mails scored each round', '400')
    .option('--cap-local-steps <n>', 'at most this many local steps whatever a configuration sets (CPU smoke checks)', '0')
    .option('--val-limit <n>', "validation e-mails each site scores per round (early stopping's signal)", '50')
    .option('--eval-every <n>', 'score the held-out set every n rounds (and the last); the curve keeps the scored rounds', '1')
    .option('--eval-last <n>', 'also score each of the last n rounds', '0')
    .option('--no-fed-eval', "skip federated evaluation (the sites' validation figures early stopping reads)")
    .option('--fed-eval-every <n>', 'federated evaluation every n rounds (default: --eval-every)', '0')
    .option('--keep-correct', 'keep which held-out e-mails each scored version got right (run 19)')
    .option('--site-cells', 'local-only configurations: one process per site (run 20)')
    .option('--sites <list>', 'with --site-cells: only these sites (e.g. 1,2)', '')
    .option('--parallel <n>', 'cells at a time', '2')
    .option('--out <file>', 'JSON output', 'bench/out/quality.json')
    .parse()
    .opts<Record<string, string>>();
  const cells: QualityCell[] = [];
  for (const split of o.splits.split(',') as SplitName[]) {
    if (!(split in SPLITS)) throw new Error(`unknown split ${split}; known: ${Object.keys(SPLITS).join(', ')}`);
    for (const config of o.configs.split(',')) {
      if (!(config in QUALITY_CONFIGS)) throw new Error(`unknown config ${config}; known: ${Object.keys(QUALITY_CONFIGS).join(', ')}`);
      const own = configTraining(QUALITY_CONFIGS[config]);
      for (const seed of o.seeds.split(',').map(Number)) {
        cells.push({
          split,
          seed,
          splitSeed: Number(o.splitSeed),
          config,
          rounds: Number(o.rounds),
          clients: QUALITY_CONFIGS[config].clients ?? Number(o.clients),
          // A configuration's own rate and steps win over the flags (bench/quality-configs.ts).
          localSteps: capSteps(own.localSteps ?? Number(o.localSteps), Number(o.capLocalSteps)),
          batchSize: Number(o.batchSize),
          learningRate: own.learningRate ?? Number(o.lr),
          testLimit: Number(o.testLimit),
          // commander's --no-fed-eval sets fedEval to false (a boolean, whatever the record's type says).
          fedEval: String(o.fedEval) !== 'false',
          valLimit: Number(o.valLimit),
          // Only when set: cells of the default (every round) keep the JSON of runs 1-13.
          ...(Number(o.evalEvery) > 1 ? { evalEvery: Number(o.evalEvery) } : {}),
          ...(Number(o.evalLast) > 0 ? { evalLast: Number(o.evalLast) } : {}),
          ...(Number(o.fedEvalEvery) > 0 ? { fedEvalEvery: Number(o.fedEvalEvery) } : {}),
          ...(String(o.keepCorrect) === 'true' ? { keepCorrect: true } : {}),
        });
      }
    }
  }
  // --site-cells: each local-only cell runs as one process per site, in the cells' order (run 20).
  const queue =
    String(o.siteCells) === 'true'
      ? cells.flatMap((c) =>
          QUALITY_CONFIGS[c.config].mode === 'local'
            ? Array.from({ length: c.clients }, (_, site) => ({ ...c, site })).filter((u) => o.sites === '' || o.sites.split(',').map(Number).includes(u.site))
            : [c],
        )
      : cells;
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
    await fs.writeFile(o.out.replace(/\.json$/, '') + '.md', `${table(summary)}\n\n${stoppingTable(summary)}\n`);
  };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < queue.length) {
      const cell = queue[next++];
      const r = await runChild(cell);
      results.push(r);
      console.log(
        `${cell.split}/${cell.config}/seed ${cell.seed}${cell.site !== undefined ? `/site ${cell.site}` : ''}: ${r.ok ? `done in ${r.seconds.toFixed(0)} s` : `FAILED: ${r.error}`}`,
      );
      await write();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Number(o.parallel)) }, worker));
  await write();
  console.log(`${table(summarise(results))}\n\n${stoppingTable(summarise(results))}`);
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
