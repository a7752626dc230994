// Run 20's tables (bench/QUALITY.md, "Run 20"), from the drivers' JSON (cells run with --keep-correct):
//   node dist/bench/quality-run20-table.js --fed q20a.json [--local q20b.json] [--local-log q20b.log] [--reps 1000]
//   node dist/bench/quality-run20-table.js --project q19a.json --size 907 [--smooth 5] [--reps 1000]
//   node dist/bench/quality-run20-table.js --replay q16d.json,q19a.json,q20a.json
// --fed: per run, the best held-out accuracy seen on the whole set and on its first 400 e-mails (runs 1-19's
//   sample: the same e-mails in the same order), the release pointer's version (CellResult.releases) and its gap on
//   each, and the other rules replayed (bench/quality-stopping.ts); with --reps, the perfect pick's bootstrap floor
//   on the whole set and on 400.
// --local: each site's best held-out accuracy alone, per seed, against the federated run of the same split and seed
//   (its release pointer's version and its best); --local-log adds the sites a deadline cut (their rounds so far).
// --project: run 19's 400-e-mail bit sets, projected to a judge of --size e-mails (see floorRows).
import { promises as fs } from 'node:fs';
import type { CellResult, RoundPoint } from './quality-cell';
import type { EarlyStoppingSettings } from '../coordinator/evaluation/early-stopping';
import { earlyStoppingPick, STOP_RULES } from './quality-stopping';
import { bestOf, draw, rightOf, rng, scores, trainedOf } from './quality-run19-table';

export interface Run {
  readonly split: string;
  readonly seed: number;
  readonly curve: readonly RoundPoint[];
  readonly release: number | null;
  /** Held-out e-mails each scoring read. */
  readonly n: number;
}

const pts = (x: number): string => (100 * x).toFixed(2);
/** "Within 0.5 point", robust to float noise in a difference of two accuracies. */
const within = (gap: number): boolean => gap <= 0.005 + 1e-9;
const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

async function cellsOf(file: string): Promise<CellResult[]> {
  return (JSON.parse(await fs.readFile(file, 'utf8')) as { cells: CellResult[] }).cells.filter((c) => c.ok);
}

async function runsOf(file: string): Promise<Run[]> {
  return (await cellsOf(file))
    .filter((c) => c.curves.length === 1)
    .map((c) => ({ split: c.cell.split, seed: c.cell.seed, curve: c.curves[0], release: c.releases?.[0] ?? null, n: c.heldOut ?? c.cell.testLimit }))
    .sort((a, b) => a.split.localeCompare(b.split) || a.seed - b.seed);
}

/** Accuracy of each trained version on the first k held-out e-mails (undefined without bit sets). */
export function prefixAccuracy(r: Run, k: number): Map<number, number> | undefined {
  const d = rightOf(r.curve, r.n);
  if (!d) return undefined;
  const w = new Float64Array(d.n);
  w.fill(1, 0, Math.min(k, d.n));
  const s = scores(d.right, w, Math.min(k, d.n));
  return new Map(d.rounds.map((round, i) => [round, s[i]]));
}

interface Judged {
  readonly best: number;
  readonly bestRound: number;
  readonly release: number;
}
function judged(acc: ReadonlyMap<number, number>, release: number): Judged {
  let best = -1;
  let bestRound = -1;
  for (const [round, a] of acc) if (a > best) [best, bestRound] = [a, round];
  return { best, bestRound, release: acc.get(release) ?? NaN };
}

function pickTable(runs: readonly Run[]): string {
  const lines = [
    '| split | seed | whole set (n): best seen, % (round) | release pointer: round, %, gap | first 400: best seen (round) | release on 400, gap | val loss (default), gap on n | val accuracy, gap on n |',
    '|---|---|---|---|---|---|---|---|',
  ];
  const gaps = { whole: [] as number[], first400: [] as number[], loss: [] as number[], acc: [] as number[] };
  for (const r of runs) {
    const whole = new Map(trainedOf(r.curve).map((p) => [p.round, p.accuracy]));
    const rel = r.release ?? NaN;
    const w = judged(whole, rel);
    const p400 = prefixAccuracy(r, 400);
    const f = p400 ? judged(p400, rel) : undefined;
    const loss = earlyStoppingPick(r.curve, STOP_RULES.release);
    const acc = earlyStoppingPick(r.curve, { ...STOP_RULES.accuracy, patience: 0 });
    gaps.whole.push(w.best - w.release);
    if (f) gaps.first400.push(f.best - f.release);
    if (loss) gaps.loss.push(loss.gap);
    if (acc) gaps.acc.push(acc.gap);
    lines.push(
      `| ${r.split} | ${r.seed} | ${pts(w.best)} (${w.bestRound}) [n ${r.n}] | r${rel}: ${pts(w.release)} (−${pts(w.best - w.release)}) | ${f ? `${pts(f.best)} (${f.bestRound})` : '–'} | ${f ? `${pts(f.release)} (−${pts(f.best - f.release)})` : '–'} | ${loss ? `r${loss.pickedRound} (−${pts(loss.gap)})` : '–'} | ${acc ? `r${acc.pickedRound} (−${pts(acc.gap)})` : '–'} |`,
    );
  }
  const row = (name: string, g: number[]): string =>
    g.length ? `| ${name} | ${g.filter(within).length} of ${g.length} | ${pts(mean(g))} | ${pts(Math.max(...g))} |` : `| ${name} | – | – | – |`;
  lines.push(
    '',
    '| judged on | within 0.5 point | mean gap | worst |',
    '|---|---|---|---|',
    row('release pointer (val accuracy, window 5), whole set', gaps.whole),
    row('release pointer, first 400 e-mails', gaps.first400),
    row('val loss (the default), whole set', gaps.loss),
    row('val accuracy, whole set', gaps.acc),
  );
  return lines.join('\n');
}

/**
 * The bootstrap over a run's held-out e-mails (each an independent draw from the population the run's n e-mails
 * stand for), for a judge of m e-mails:
 *  (a) perfect pick: the version best on all n, scored on a draw of m, against that draw's best version;
 *  (c) the release pointer's version, judged on the n e-mails known plus m − n drawn from them (m > n: run 19's
 *      400 projected to 907; the first n of the judge are then the real ones);
 *  (d) the release pointer's version, judged on a fresh draw of m.
 * Per run: mean gap and the chance of being within 0.5; over runs, the expected count within and the chance that
 * all are (the runs independent).
 * With smooth k > 1 the population's accuracy of each version is not its score on the n e-mails but the centred
 * mean of k consecutive scores (the EMA adapter changes little over k × 20 rounds, so most of the scatter between
 * neighbours is which e-mails the sample holds); a judge is then that curve plus a draw's deviation from the n
 * e-mails' own scores, which keeps the versions' joint noise for a judge of m. (c) is left out then.
 */
function floorRows(runs: readonly Run[], m: number, reps: number, smooth = 1): string {
  const lines = [
    `| split | seed | (a) perfect pick, judge of ${m}: mean gap, P(within 0.5) | (c) release, ${m} = known + drawn: P(within 0.5) | (d) release, fresh ${m}: P(within 0.5) |`,
    '|---|---|---|---|---|',
  ];
  const p = { a: [] as number[], c: [] as number[], d: [] as number[] };
  const gapsA: number[] = [];
  for (const r of runs) {
    const d = rightOf(r.curve, r.n);
    if (!d) continue;
    const next = rng(7919 * r.seed + 31 * r.split.length + m);
    const own = scores(d.right, new Float64Array(d.n).fill(1), d.n);
    const h = Math.floor(smooth / 2);
    const pop = smooth > 1 ? own.map((_, i) => mean(own.slice(Math.max(0, i - h), i + h + 1))) : own;
    const top = pop.indexOf(Math.max(...pop));
    const judge = (w: Float64Array, total: number): number[] => scores(d.right, w, total).map((x, i) => pop[i] + x - own[i]);
    const rel = r.release === null ? -1 : d.rounds.indexOf(r.release);
    let hitA = 0;
    let hitC = 0;
    let hitD = 0;
    let sumA = 0;
    for (let b = 0; b < reps; b++) {
      const fresh = judge(draw(d.n, m, next), m);
      const fmax = Math.max(...fresh);
      sumA += fmax - fresh[top];
      if (within(fmax - fresh[top])) hitA++;
      if (rel >= 0 && within(fmax - fresh[rel])) hitD++;
      if (rel >= 0 && m > d.n && smooth <= 1) {
        const w = draw(d.n, m - d.n, next);
        for (let i = 0; i < d.n; i++) w[i] += 1;
        const known = scores(d.right, w, m);
        if (within(Math.max(...known) - known[rel])) hitC++;
      }
    }
    p.a.push(hitA / reps);
    gapsA.push(sumA / reps);
    if (rel >= 0) p.d.push(hitD / reps);
    if (rel >= 0 && m > d.n && smooth <= 1) p.c.push(hitC / reps);
    const pc = (x: number): string => `${Math.round(100 * x)}%`;
    lines.push(
      `| ${r.split} | ${r.seed} | ${pts(sumA / reps)}, ${pc(hitA / reps)} | ${rel >= 0 && m > d.n && smooth <= 1 ? pc(hitC / reps) : '–'} | ${rel >= 0 ? pc(hitD / reps) : '–'} |`,
    );
  }
  const sum = (xs: number[]): string => (xs.length ? xs.reduce((a, b) => a + b, 0).toFixed(1) : '–');
  const all = (xs: number[]): string => (xs.length ? `${(100 * xs.reduce((a, b) => a * b, 1)).toFixed(1)}%` : '–');
  lines.push(
    `| expected within, of ${p.a.length}; P(all within) | | ${sum(p.a)}; ${all(p.a)} (mean gap ${gapsA.length ? pts(mean(gapsA)) : '–'}) | ${sum(p.c)}; ${all(p.c)} | ${sum(p.d)}; ${all(p.d)} |`,
  );
  return lines.join('\n');
}

interface SiteCurve {
  readonly split: string;
  readonly seed: number;
  readonly site: number;
  readonly curve: readonly RoundPoint[];
  readonly n: number;
}

/** Each local-only site's curve: from the driver's JSON (whole cells or --site-cells units), else from its log. */
async function siteCurves(localFiles: string | undefined, logFiles: string | undefined): Promise<SiteCurve[]> {
  const out: SiteCurve[] = [];
  for (const c of (await Promise.all((localFiles ? localFiles.split(',') : []).map(cellsOf))).flat()) {
    c.curves.forEach((curve, i) => out.push({ split: c.cell.split, seed: c.cell.seed, site: c.cell.site ?? i, curve, n: c.heldOut ?? c.cell.testLimit }));
  }
  // A unit cut at the call's deadline has no JSON; its log lines carry every round it scored (two decimals).
  const line = /^(\S+)\/local\/(\d+) \[(\d+)\] round (\d+): accuracy ([\d.]+)%/;
  // Several calls' logs may hold the same site: the one that got furthest counts.
  const logged = new Map<string, SiteCurve & { curve: RoundPoint[] }>();
  for (const file of logFiles ? logFiles.split(',') : []) {
    const mine = new Map<string, SiteCurve & { curve: RoundPoint[] }>();
    for (const l of (await fs.readFile(file, 'utf8')).split('\n')) {
      const m = line.exec(l.trim());
      if (!m) continue;
      const key = `${m[1]}/${m[2]}/${m[3]}`;
      const sc = mine.get(key) ?? { split: m[1], seed: Number(m[2]), site: Number(m[3]), curve: [], n: NaN };
      mine.set(key, sc);
      sc.curve.push({ round: Number(m[4]), accuracy: Number(m[5]) / 100, loss: NaN, extra: {} });
    }
    for (const [key, sc] of mine) if ((logged.get(key)?.curve.length ?? -1) < sc.curve.length) logged.set(key, sc);
  }
  for (const sc of logged.values()) if (!out.some((o) => o.split === sc.split && o.seed === sc.seed && o.site === sc.site)) out.push(sc);
  return out.sort((a, b) => a.split.localeCompare(b.split) || a.seed - b.seed || a.site - b.site);
}

async function localTable(localFile: string | undefined, logFile: string | undefined, fedFile: string | undefined, rounds: number): Promise<string> {
  const sites = await siteCurves(localFile, logFile);
  const fed = fedFile ? await runsOf(fedFile) : [];
  const lines = [
    '| split | seed | local-only best per site, % (whole set; a site cut short: best so far, its last round) | the same on the first 400 | federated: released (round), best seen, % | released − best site alone, points |',
    '|---|---|---|---|---|---|',
  ];
  const keys = [...new Set(sites.map((s) => `${s.split}\u0000${s.seed}`))];
  for (const k of keys) {
    const [split, seedText] = k.split('\u0000');
    const seed = Number(seedText);
    const mine = sites.filter((s) => s.split === split && s.seed === seed);
    // A unit cut before its first trained round has no figure (NaN).
    const best = mine.map((s) => (trainedOf(s.curve).length > 0 ? bestOf(s.curve).accuracy : NaN));
    const shown = mine.map((s, i) => {
      const last = s.curve[s.curve.length - 1]?.round ?? 0;
      return `${Number.isFinite(best[i]) ? pts(best[i]) : '–'}${last < rounds ? ` (cut, r${last})` : ''}`;
    });
    const first400 = mine.map((s) => {
      const p = Number.isFinite(s.n) ? prefixAccuracy({ split, seed, curve: s.curve, release: null, n: s.n }, 400) : undefined;
      return p ? pts(Math.max(...p.values())) : '–';
    });
    const f = fed.find((r) => r.split === split && r.seed === seed);
    const rel = f?.release != null ? f.curve.find((p) => p.round === f.release)?.accuracy : undefined;
    const margin = rel !== undefined ? rel - Math.max(...best.filter(Number.isFinite)) : NaN;
    lines.push(
      `| ${split} | ${seed} | ${mine.map((s, i) => `${s.site}: ${shown[i]}`).join(' / ')} | ${first400.join(' / ')} | ${rel !== undefined ? `${pts(rel)} (r${f!.release}), ${pts(bestOf(f!.curve).accuracy)}` : '–'} | ${Number.isFinite(margin) ? `${margin > 0 ? '+' : ''}${pts(margin)}` : '–'} |`,
    );
  }
  return lines.join('\n');
}

/**
 * Release rules replayed on several drivers' runs (each judged on its own held-out scores, every 20 rounds): the
 * coordinator's nextBest on validation accuracy over windows of 1-11 evaluations, on validation loss, and two
 * fixed picks (the run's last version; round 500). Whether any rule beats the product's on runs it was not chosen on.
 */
async function replayTable(files: readonly string[]): Promise<string> {
  const rules: [string, (c: readonly RoundPoint[]) => number | undefined][] = [];
  const pickOf = (rule: EarlyStoppingSettings) => (c: readonly RoundPoint[]) => earlyStoppingPick(c, rule)?.pickedRound;
  for (const w of [1, 3, 5, 7, 9, 11]) rules.push([`val accuracy, window ${w}`, pickOf({ ...STOP_RULES.accuracy, patience: 0, window: w })]);
  for (const w of [1, 5, 9]) rules.push([`val loss, window ${w}`, pickOf({ ...STOP_RULES.release, window: w })]);
  rules.push(['the last version', (c) => trainedOf(c).pop()?.round]);
  rules.push(['round 500', () => 500]);
  const sets = await Promise.all(files.map(async (f) => ({ f, runs: await runsOf(f) })));
  const lines = [
    `| rule | ${files.map((f) => `${f.split('/').pop()}: within 0.5, mean gap, worst`).join(' | ')} | all |`,
    `|---|${files.map(() => '---|').join('')}---|`,
  ];
  for (const [name, pick] of rules) {
    const all: number[] = [];
    const cells = sets.map(({ runs }) => {
      const g = runs.flatMap((r) => {
        const at = pick(r.curve);
        const p = trainedOf(r.curve).find((x) => x.round === at);
        return p ? [bestOf(r.curve).accuracy - p.accuracy] : [];
      });
      all.push(...g);
      return g;
    });
    const f = (g: number[]): string => (g.length ? `${g.filter(within).length}/${g.length}, ${pts(mean(g))}, ${pts(Math.max(...g))}` : '–');
    lines.push(`| ${name} | ${cells.map(f).join(' | ')} | ${f(all)} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const reps = Number(opt('--reps') ?? 1000);
  const fed = opt('--fed');
  const local = opt('--local');
  const project = opt('--project');
  const replay = opt('--replay');
  if (replay) console.log(`## Release rules replayed\n\n${await replayTable(replay.split(','))}\n`);
  if (fed) {
    const runs = await runsOf(fed);
    console.log(`## Release picks (${fed})\n\n${pickTable(runs)}\n`);
    if (reps > 0) {
      for (const m of [...new Set([runs[0]?.n ?? 0, 400])].filter((x) => x > 0)) {
        // A judge of 400 drawn from the whole set: what runs 1-19's sample size would give on these curves.
        console.log(`## Noise floor, judge of ${m} (bootstrap over the ${runs[0].n} e-mails, ${reps} draws)\n\n${floorRows(runs, m, reps)}\n`);
      }
    }
  }
  const localLog = opt('--local-log');
  if (local || localLog)
    console.log(
      `## Local-only (${[local, localLog].filter(Boolean).join(', ')})\n\n${await localTable(local, localLog, fed, Number(opt('--rounds') ?? 30))}\n`,
    );
  if (project) {
    const runs = await runsOf(project);
    for (const smooth of [1, Number(opt('--smooth') ?? 5)]) {
      for (const m of [runs[0]?.n ?? 400, Number(opt('--size') ?? 907)]) {
        const how = smooth > 1 ? `, population = centred mean of ${smooth} scores` : ', population = the sample';
        console.log(`## ${project}, judge of ${m} (bootstrap over the ${runs[0]?.n} e-mails${how}, ${reps} draws)\n\n${floorRows(runs, m, reps, smooth)}\n`);
      }
    }
  }
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
