// Run 22's regime choice, before any GPU time (bench/QUALITY.md "Run 22"): how much signal a round's clipped mean
// carries at each site size, against the noise DP puts on it. FedSGD's update of a site of k e-mails is −g, the mean
// of its e-mails' gradients (one SGD step at rate 1 on its k e-mails), so one set of per-e-mail gradients gives the
// sites of 1, 2 and 4 e-mails by averaging consecutive runs of them: the population's order (virtualSites) nests the
// same way (site j of 4 e-mails is e-mails 4j … 4j+3 of the seeded order). Checked here: a site trained on its 4
// e-mails at once gives the mean of their 4 updates (`nested` in the output).
//
// At an adapter part-way through learning (local AdamW on e-mails outside the probe's), for each k and C:
//   signal per value  ‖E clip_C(u)‖ / √d, from the U-statistic Σ_{i≠j} u_i·u_j / (n(n−1)) (unbiased for ‖E u‖²);
//   spread per value  √(E‖u − E u‖² / d), the cohort's own sampling noise is that over √m;
// and for each candidate regime (N, m, T, z for ε 8 at δ 1e-5 from the project's accountant) DP's noise on a value of
// the mean, z·C/m, over that signal.
//   node dist/bench/quality-run22-signal.js --emails 512 --warm 0,40,100 > signal.json   (CPU: tfjs)
//   node dist/bench/quality-run22-signal.js --table signal.json                        (its tables in markdown)
import { promises as fs } from 'node:fs';
import { Command } from 'commander';
import { selectBackend } from '../client-sdk/model/backend';
import { loadGpt2Dir } from '../client-sdk/model/load';
import { DEFAULT_MODEL_DIR } from '../client-sdk/demo/spam-task';
import { trainerForModel } from '../client-sdk/sft/lora-trainer';
import { evaluateAdapter } from '../client-sdk/sft/evaluate';
import type { SftExample } from '../client-sdk/sft/types';
import type { TrainingPlan } from '../client-sdk/trainer';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import type { NamedTensor } from '../proto/tensors';
import { COHORT_POOL_CLIENTS, virtualSites } from './quality-cohort';
import { cellTask } from './quality-cell';
import { RUN22_CANDIDATES, zForEpsilon } from './quality-configs-run22';

const LORA: LoraConfig = { r: 1, alpha: 2, dropout: 0, targetModules: ['c_attn'] };
const CLIPS = [0.5, 1, 2, 4, 8];

function flat(a: readonly NamedTensor[], g: readonly NamedTensor[]): Float64Array {
  const n = a.reduce((s, t) => s + t.data.length, 0);
  const out = new Float64Array(n);
  let o = 0;
  a.forEach((t, k) => {
    for (let i = 0; i < t.data.length; i++) out[o++] = t.data[i] - g[k].data[i];
  });
  return out;
}

const dot = (x: Float64Array, y: Float64Array): number => x.reduce((s, v, i) => s + v * y[i], 0);
const norm = (x: Float64Array): number => Math.sqrt(dot(x, x));
const quantile = (xs: readonly number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];

/** Signal and spread per value of clip_C(u) over the sites `us` (d values each). */
function clipStats(us: readonly Float64Array[], c: number): { signal: number; spread: number } {
  const d = us[0].length;
  const sum = new Float64Array(d);
  let sq = 0;
  for (const u of us) {
    const s = Math.min(1, c / norm(u));
    for (let i = 0; i < d; i++) sum[i] += s * u[i];
    sq += s * s * dot(u, u);
  }
  const n = us.length;
  const e2 = Math.max(0, (dot(sum, sum) - sq) / (n * (n - 1)));
  return { signal: Math.sqrt(e2 / d), spread: Math.sqrt(Math.max(0, sq / n - e2) / d) };
}

async function main(): Promise<void> {
  const o = new Command()
    .option('--emails <n>', 'probe e-mails (a multiple of 4)', '768')
    .option('--warm <list>', 'AdamW steps of batch 16 (cumulative) before each probe', '0,40,80')
    .option('--warm-lr <x>', 'the warm-up AdamW rate', '0.01')
    .option('--test-limit <n>', 'held-out e-mails scored at each probe', '100')
    .option('--table <file>', 'print the tables of a saved run instead')
    .parse()
    .opts<{ emails: string; warm: string; warmLr: string; testLimit: string; table?: string }>();
  if (o.table) return void process.stdout.write(tables(JSON.parse(await fs.readFile(o.table, 'utf8')) as Probes));
  await selectBackend();
  const n = Number(o.emails);
  const cell = { split: 'dirichlet-0.5', splitSeed: 7, testLimit: Number(o.testLimit), valLimit: 0 } as const;
  const task = cellTask(
    { ...cell, seed: 42, config: '', rounds: 0, clients: COHORT_POOL_CLIENTS, localSteps: 1, batchSize: 1, learningRate: 1 },
    COHORT_POOL_CLIENTS,
  );
  const train = task.clients.flatMap((c) => c.train);
  // The population's seeded order, one e-mail a site (the 2- and 4-e-mail populations are its consecutive runs).
  const order = virtualSites(train, { sites: train.length, perSite: 1, cohort: 1, sampling: 'poisson', slots: 1 }, cell.splitSeed).map((s) => s[0]);
  const probe = order.slice(0, n);
  const warmPool = order.slice(n);
  const base = await loadGpt2Dir(DEFAULT_MODEL_DIR);
  const pool: SftExample[] = [...probe];
  const { trainer, backend } = await trainerForModel(base.model, LORA, { train: pool, eval: [], choices: task.choices, evalMaxSeqLen: 128 });
  const plan = (k: number, opt: TrainingPlan['optimizer'], lr: number, steps: number, seed: number): TrainingPlan => ({
    round: 1,
    taskId: 'probe',
    localSteps: steps,
    batchSize: k,
    learningRate: lr,
    weightDecay: 0,
    maxSeqLen: 128,
    optimizer: opt,
    seed,
  });
  const run = async (emails: readonly SftExample[], p: TrainingPlan, g: NamedTensor[]): Promise<NamedTensor[]> => {
    pool.splice(0, pool.length, ...emails);
    return (await trainer.train(g, p)).adapter;
  };
  let global = initLoraAdapter(base.model.config, LORA, 42);
  let done = 0;
  const probes = [];
  const t0 = Date.now();
  for (const [pi, w] of o.warm.split(',').map(Number).entries()) {
    if (w > done) global = await run(warmPool, plan(16, { name: 'adamw' }, Number(o.warmLr), w - done, 1000 + pi), global);
    done = w;
    const held = await evaluateAdapter(base.model, { tensors: global, lora: LORA }, task.test, task.choices, 32, 128);
    const one: Float64Array[] = [];
    for (const e of probe) one.push(flat(await run([e], plan(1, { name: 'sgd', momentum: 0 }, 1, 1, 7), global), global));
    // The nesting check: site 0 of 4 e-mails trained at once against the mean of its e-mails' updates.
    const four = flat(await run(probe.slice(0, 4), plan(4, { name: 'sgd', momentum: 0 }, 1, 1, 7), global), global);
    const nested = Math.max(...four.map((v, i) => Math.abs(v - (one[0][i] + one[1][i] + one[2][i] + one[3][i]) / 4))) / Math.max(...four.map(Math.abs));
    const bySize: Record<string, unknown> = {};
    for (const k of [1, 2, 4]) {
      const us = Array.from({ length: n / k }, (_, j) => {
        const u = new Float64Array(one[0].length);
        for (let i = 0; i < k; i++) one[j * k + i].forEach((v, x) => (u[x] += v / k));
        return u;
      });
      const norms = us.map(norm);
      bySize[k] = {
        sites: us.length,
        norm: { p10: quantile(norms, 0.1), p25: quantile(norms, 0.25), median: quantile(norms, 0.5), p75: quantile(norms, 0.75), p90: quantile(norms, 0.9) },
        clip: Object.fromEntries(CLIPS.map((c) => [c, { ...clipStats(us, c), clipped: norms.filter((x) => x > c).length / norms.length }])),
      };
    }
    probes.push({ warmSteps: w, heldout: held, nested, d: one[0].length, bySize, seconds: (Date.now() - t0) / 1000 });
    process.stderr.write(
      `probe at ${w} warm steps: held-out loss ${held.eval_loss.toFixed(3)}, accuracy ${(100 * held.eval_accuracy).toFixed(1)}%, ${((Date.now() - t0) / 1000).toFixed(0)} s\n`,
    );
  }
  // Each candidate regime's noise on a value of the mean against each probe's signal, at each C.
  const regimes = RUN22_CANDIDATES.map((r) => ({ ...r, z: zForEpsilon(r) }));
  process.stdout.write(`${JSON.stringify({ backend, emails: n, regimes, probes }, null, 1)}\n`);
}

interface ClipStat {
  readonly signal: number;
  readonly spread: number;
  readonly clipped: number;
}
interface Probes {
  readonly probes: readonly {
    readonly warmSteps: number;
    readonly heldout: { readonly eval_loss: number; readonly eval_accuracy: number };
    readonly bySize: Record<string, { readonly norm: Record<string, number>; readonly clip: Record<string, ClipStat> }>;
  }[];
}

/** Two markdown tables: each probe's norms and signal per C by site size; each regime's DP noise against that signal at C 2. */
function tables(p: Probes): string {
  const f = (x: number, d = 4): string => x.toFixed(d);
  const out = [
    '| probe (warm steps: held-out loss, accuracy) | e-mails a site | norm p10 / p25 / median / p75 / p90 | signal per value at C 0.5 / 1 / 2 / 4 / 8 | clipped at C 2 |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const pr of p.probes)
    for (const [k, s] of Object.entries(pr.bySize))
      out.push(
        `| ${pr.warmSteps}: ${f(pr.heldout.eval_loss, 3)}, ${(100 * pr.heldout.eval_accuracy).toFixed(0)}% | ${k} | ${['p10', 'p25', 'median', 'p75', 'p90'].map((q) => f(s.norm[q], 2)).join(' / ')} | ${CLIPS.map((c) => f(s.clip[c].signal)).join(' / ')} | ${(100 * s.clip[2].clipped).toFixed(0)}% |`,
      );
  out.push(
    '',
    `| regime (N × e-mails, m, T 150) | z | z·C/m at C 2 | signal / (z·C/m) at C 2, probe ${p.probes.map((x) => x.warmSteps).join(' / ')} | DP noise / the cohort's own (spread/√m) |`,
    '| --- | --- | --- | --- | --- |',
  );
  for (const r of [...RUN22_CANDIDATES.filter((c) => c.rounds === 150)].sort((a, b) => a.perSite - b.perSite || a.cohort - b.cohort)) {
    const z = zForEpsilon(r);
    const noise = (z * 2) / r.cohort;
    const st = p.probes.map((pr) => pr.bySize[r.perSite].clip[2]);
    out.push(
      `| ${r.sites} × ${r.perSite}, m ${r.cohort} | ${f(z, 3)} | ${f(noise)} | ${st.map((s) => f(s.signal / noise, 2)).join(' / ')} | ${st.map((s) => f(noise / (s.spread / Math.sqrt(r.cohort)), 1)).join(' / ')} |`,
    );
  }
  return `${out.join('\n')}\n`;
}

void main();
