// Run 19's tables (bench/QUALITY.md, "Run 19"), from the drivers' JSON:
//   node dist/bench/quality-run19-table.js q19a.json [q19b.json] [--fed q16a.json --val q16d.json]
// 1. The release rule's confirmation (q19a): per run, the best held-out accuracy seen (every 10 rounds), the version
//    the coordinator's release pointer named (CellResult.releases) and its gap, and the same curve replayed under
//    the other rules (the coordinator's own nextBest, bench/quality-stopping.ts).
// 2. The noise floor, by bootstrap over the held-out e-mails each scored version got right (RoundPoint.correct):
//    (a) the judge alone: how far under a fresh 400-e-mail sample's best the version that is best on the whole
//    sample scores; (b) a perfect validation rule: a sample of m e-mails drawn like the held-out set, read every
//    20 rounds, its argmax (or its 5-evaluation window) judged on an independent 400-e-mail draw.
// 3. Local-only (q19b): each site's best held-out accuracy, per seed; with --fed/--val (run 16 and 16b on the same
//    seeds) each site's margin under the federated run's best and under what its release rule would ship.
import { promises as fs } from 'node:fs';
import type { EarlyStoppingSettings } from '../coordinator/evaluation/early-stopping';
import type { CellResult, RoundPoint } from './quality-cell';
import { earlyStoppingPick, STOP_RULES } from './quality-stopping';

interface Run {
  readonly split: string;
  readonly seed: number;
  readonly curve: readonly RoundPoint[];
  readonly release: number | null;
  /** Held-out e-mails scored. */
  readonly tested: number;
}

const RULES: Readonly<Record<string, EarlyStoppingSettings>> = {
  'val loss (default)': STOP_RULES.release,
  'val accuracy': { ...STOP_RULES.accuracy, patience: 0 },
  'val accuracy, window 5 (run 19)': STOP_RULES.accuracyWindow,
  'the same, patience 5': STOP_RULES.accuracyWindowStop,
};

const pts = (x: number): string => (100 * x).toFixed(2);
const round2 = (x: number): number => Math.round(x * 1e6) / 1e6;

async function runsOf(file: string): Promise<Run[]> {
  const cells = (JSON.parse(await fs.readFile(file, 'utf8')) as { cells: CellResult[] }).cells;
  return cells
    .filter((c) => c.ok && c.curves.length === 1)
    .map((c) => ({ split: c.cell.split, seed: c.cell.seed, curve: c.curves[0], release: c.releases?.[0] ?? null, tested: c.cell.testLimit }))
    .sort((a, b) => a.split.localeCompare(b.split) || a.seed - b.seed);
}

export const trainedOf = (curve: readonly RoundPoint[]): RoundPoint[] => curve.filter((p) => p.round >= 1);
export const bestOf = (curve: readonly RoundPoint[]): RoundPoint => trainedOf(curve).reduce((b, p) => (p.accuracy > b.accuracy ? p : b));

function pickTable(runs: readonly Run[]): string {
  const lines = [
    `| split | seed | best seen, % (round) | ${Object.keys(RULES).join(' | ')} | release pointer (the product's) |`,
    `|---|---|---|${Object.keys(RULES)
      .map(() => '---|')
      .join('')}---|`,
  ];
  const gaps: Record<string, number[]> = {};
  for (const r of runs) {
    const best = bestOf(r.curve);
    const cells: string[] = [];
    for (const [name, rule] of Object.entries(RULES)) {
      const p = earlyStoppingPick(r.curve, rule);
      if (!p) {
        cells.push('–');
        continue;
      }
      (gaps[name] ??= []).push(round2(p.gap));
      cells.push(`r${p.pickedRound}: ${pts(p.accuracy)} (−${pts(p.gap)})${Number.isFinite(p.stopRound) ? `, stop r${p.stopRound}` : ''}`);
    }
    const rel = r.release === null ? undefined : r.curve.find((p) => p.round === r.release);
    if (rel) (gaps['release pointer'] ??= []).push(round2(best.accuracy - rel.accuracy));
    cells.push(rel ? `r${rel.round}: ${pts(rel.accuracy)} (−${pts(best.accuracy - rel.accuracy)})` : '–');
    lines.push(`| ${r.split} | ${r.seed} | ${pts(best.accuracy)} (${best.round}) | ${cells.join(' | ')} |`);
  }
  lines.push('', '| rule | within 0.5 point | mean gap | worst |', '|---|---|---|---|');
  for (const [name, g] of Object.entries(gaps)) {
    lines.push(`| ${name} | ${g.filter((x) => x <= 0.005).length} of ${g.length} | ${pts(g.reduce((a, b) => a + b, 0) / g.length)} | ${pts(Math.max(...g))} |`);
  }
  return lines.join('\n');
}

/** mulberry32: a small seeded generator, so the bootstrap's figures repeat exactly. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** How many times each of n e-mails is drawn in m draws with replacement. */
export function draw(n: number, m: number, next: () => number): Float64Array {
  const w = new Float64Array(n);
  for (let i = 0; i < m; i++) w[Math.floor(next() * n)]++;
  return w;
}

/** Per scored version (rounds ≥ 1, in order), which held-out e-mails it got right. */
export function rightOf(curve: readonly RoundPoint[], n: number): { rounds: number[]; right: Uint8Array[]; n: number } | undefined {
  const t = trainedOf(curve);
  if (t.some((p) => p.correct === undefined)) return undefined;
  const right = t.map((p) => {
    const bits = Buffer.from(p.correct!, 'base64');
    return Uint8Array.from({ length: bits.length * 8 }, (_, i) => (bits[i >> 3] >> (i & 7)) & 1);
  });
  // The bit sets are padded to whole bytes.
  return { rounds: t.map((p) => p.round), right: right.map((r) => r.subarray(0, n)), n };
}

export const scores = (right: readonly Uint8Array[], w: Float64Array, total: number): number[] =>
  right.map((r) => {
    let s = 0;
    for (let i = 0; i < r.length; i++) if (r[i]) s += w[i];
    return s / total;
  });

/** The index the rule picks on `acc` (every version) reading only the versions in `read`: argmax or a centred window mean. */
export function pick(acc: readonly number[], read: readonly number[], window: number): number {
  let best = -Infinity;
  let at = read[0];
  for (let k = 0; k < read.length; k++) {
    const win = read.slice(Math.max(0, k - window + 1), k + 1);
    const m = win.reduce((a, i) => a + acc[i], 0) / win.length;
    if (m > best) {
      best = m;
      at = win[Math.floor((win.length - 1) / 2)];
    }
  }
  return at;
}

function floorTable(runs: readonly Run[], valSize: number, reps: number): string {
  const lines = [
    `| split | seed | (a) the sample's best version on a fresh draw of as many: mean gap, P(gap > 0.5) | (b) argmax of ${valSize} e-mails every 20 rounds: mean gap, P(within 0.5) | (b) with a window of 5 |`,
    '|---|---|---|---|---|',
  ];
  const all = { a: [] as number[], b1: [] as number[], b5: [] as number[] };
  for (const r of runs) {
    const d = rightOf(r.curve, r.tested);
    if (!d) continue;
    const next = rng(1000 * r.seed + r.split.length);
    const pop = scores(d.right, new Float64Array(d.n).fill(1), d.n);
    const top = pop.indexOf(Math.max(...pop));
    const read = d.rounds.map((x, i) => (x % 20 === 0 ? i : -1)).filter((i) => i >= 0);
    const ga: number[] = [];
    const g1: number[] = [];
    const g5: number[] = [];
    for (let b = 0; b < reps; b++) {
      const judge = scores(d.right, draw(d.n, d.n, next), d.n);
      const jmax = Math.max(...judge);
      ga.push(jmax - judge[top]);
      const val = scores(d.right, draw(d.n, valSize, next), valSize);
      g1.push(jmax - judge[pick(val, read, 1)]);
      g5.push(jmax - judge[pick(val, read, 5)]);
    }
    const mean = (g: number[]): string => pts(g.reduce((a, b) => a + b, 0) / g.length);
    const share = (g: number[], f: (x: number) => boolean): string => `${Math.round((100 * g.filter(f).length) / g.length)}%`;
    const over = (x: number): boolean => round2(x) > 0.005;
    lines.push(
      `| ${r.split} | ${r.seed} | ${mean(ga)}, ${share(ga, over)} | ${mean(g1)}, ${share(g1, (x) => !over(x))} | ${mean(g5)}, ${share(g5, (x) => !over(x))} |`,
    );
    all.a.push(...ga);
    all.b1.push(...g1);
    all.b5.push(...g5);
  }
  if (all.a.length === 0) return '(no per-e-mail data: run the cells with --keep-correct)';
  const p = (g: number[], f: (x: number) => boolean): string => `${Math.round((100 * g.filter(f).length) / g.length)}%`;
  const over = (x: number): boolean => round2(x) > 0.005;
  const m = (g: number[]): string => pts(g.reduce((a, b) => a + b, 0) / g.length);
  lines.push(`| all | | ${m(all.a)}, ${p(all.a, over)} | ${m(all.b1)}, ${p(all.b1, (x) => !over(x))} | ${m(all.b5)}, ${p(all.b5, (x) => !over(x))} |`);
  return lines.join('\n');
}

/**
 * Run 16's curves (held-out every 10 rounds, no validation) with run 16b's validation figures (every 20 rounds) on
 * the same rounds: the two runs' held-out scores agree exactly where both scored, so the rules read 16b's
 * validation and are judged on run 16's 61 scores, the "best seen" of the goal.
 */
async function mergedRuns(fed: string, val: string): Promise<Run[]> {
  const vals = await runsOf(val);
  return (await runsOf(fed)).map((r) => {
    const v = vals.find((x) => x.split === r.split && x.seed === r.seed);
    const curve = r.curve.map((p) => {
      const q = v?.curve.find((x) => x.round === p.round);
      return q ? { ...p, extra: { ...p.extra, ...q.extra } } : p;
    });
    return { ...r, curve };
  });
}

async function localTable(file: string, fed?: string, val?: string): Promise<string> {
  const cells = (JSON.parse(await fs.readFile(file, 'utf8')) as { cells: CellResult[] }).cells.filter((c) => c.ok);
  const fedRuns = fed ? await runsOf(fed) : [];
  const valRuns = val ? await runsOf(val) : [];
  const lines = [
    '| split | seed | local-only best per site, % | federated best, % | released (val accuracy, window 5), % | smallest margin over a site (best / released), points |',
    '|---|---|---|---|---|---|',
  ];
  for (const c of cells.sort((a, b) => a.cell.split.localeCompare(b.cell.split) || a.cell.seed - b.cell.seed)) {
    const sites = c.curves.map((cv) => bestOf(cv).accuracy);
    const f = fedRuns.find((r) => r.split === c.cell.split && r.seed === c.cell.seed);
    const v = valRuns.find((r) => r.split === c.cell.split && r.seed === c.cell.seed);
    const fb = f ? bestOf(f.curve).accuracy : NaN;
    // The rule replayed on run 16b's validation figures, its pick read off run 16's curve (the same versions).
    const rp = v ? earlyStoppingPick(v.curve, STOP_RULES.accuracyWindow) : undefined;
    const rel = rp && f ? (f.curve.find((p) => p.round === rp.pickedRound)?.accuracy ?? NaN) : NaN;
    const worst = Math.max(...sites);
    lines.push(
      `| ${c.cell.split} | ${c.cell.seed} | ${sites.map(pts).join(' / ')} | ${Number.isFinite(fb) ? pts(fb) : '–'} | ${Number.isFinite(rel) ? `${pts(rel)} (r${rp!.pickedRound})` : '–'} | ${Number.isFinite(fb) ? `${pts(fb - worst)} / ${Number.isFinite(rel) ? pts(rel - worst) : '–'}` : '–'} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args.splice(i, 2)[1] : undefined;
  };
  const fed = opt('--fed');
  const val = opt('--val');
  const valSize = Number(opt('--val-size') ?? 515);
  const reps = Number(opt('--reps') ?? 1000);
  const [confirm, local] = args;
  if (!confirm && fed && val)
    console.log(`## Release picks: run 16b's validation, run 16's held-out (${fed}, ${val})\n\n${pickTable(await mergedRuns(fed, val))}\n`);
  if (confirm) {
    const runs = await runsOf(confirm).catch(() => []);
    console.log(`## Release picks (${confirm})\n\n${pickTable(runs)}\n`);
    if (reps > 0) console.log(`## Noise floor (bootstrap, ${reps} draws)\n\n${floorTable(runs, valSize, reps)}\n`);
  }
  if (local) console.log(`## Local-only (${local})\n\n${await localTable(local, fed, val).catch((e: Error) => e.message)}\n`);
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
