// What the Poisson-sampling suites over real gRPC share (dp-sampling-grpc, dp-sampling-switch): sites that add a
// known constant, the secret search that fixes each round's sample, DP-FedAvg with noise seeded per round, and the
// hand computation of a sampled round's fixed-denominator mean.
import { createHash } from 'node:crypto';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { poissonSample } from '../coordinator/privacy/sampling';
import { clientIdFor } from '../coordinator/registry';
import { DpStrategy } from '../coordinator/strategy/dp';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { SCALE } from '../coordinator/strategy/fixed-point';
import { GaussianStream } from '../proto/gaussian';
import type { TensorList } from '../proto/tensors';

/** Adds (i + 1)·2^-12 to every value (exact on the grid, norm far under C); records the rounds it trained in. */
export class SiteTrainer implements Trainer {
  readonly backend = 'test';
  readonly rounds: number[] = [];
  constructor(
    readonly value: number,
    private readonly delayMs = 0,
  ) {}
  async train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal): Promise<TrainOutcome> {
    this.rounds.push(plan.round);
    const end = Date.now() + this.delayMs;
    while (Date.now() < end) {
      signal?.throwIfAborted();
      await new Promise((r) => setTimeout(r, 10));
    }
    return { adapter: global.map((t) => ({ ...t, data: t.data.map((x) => x + this.value) })), numExamples: 7, metrics: { train_loss: this.value } };
  }
}

export const Q = 0.5;
export const Z = 0.5;
export const names = (n: number): string[] => Array.from({ length: n }, (_, i) => `site-${i}`);
export const secretFor = (k: number): Buffer => createHash('sha256').update(`dpsample-test-${k}`).digest();

/** The first secret whose samples of rounds 1… (site names) satisfy `want`. */
export function findSecret(runId: string, n: number, want: (samples: string[][]) => boolean, rounds: number): { secret: Buffer; samples: string[][] } {
  const byId = new Map(names(n).map((s) => [clientIdFor(s), s]));
  for (let k = 0; k < 100_000; k++) {
    const secret = secretFor(k);
    const samples = Array.from({ length: rounds }, (_, r) =>
      poissonSample(secret, runId, r + 1, [...byId.keys()], Q)
        .map((id) => byId.get(id)!)
        .sort(),
    );
    if (want(samples)) return { secret, samples };
  }
  throw new Error('no secret found');
}

export const privacy = (n: number, extra: Record<string, unknown> = {}) => ({
  privacy: { enabled: true, clipNorm: 1, noiseMultiplier: Z, delta: 1e-5, sampling: 'poisson', samplingRate: Q, minPopulation: n, ...extra },
});

/** DP-FedAvg over FedAvg whose noise in round r is drawn from seed r (`committed`: rounds already in the run). */
export function seededDp(committed: number): DpStrategy {
  let round = committed;
  return new DpStrategy(new FedAvg(), { clipNorm: 1, noiseMultiplier: Z }, () => new GaussianStream(new Uint8Array(32).fill(++round)));
}

/** The values the sites named in `sample` add (site-i is trainers[i]). */
export function sampleValues(trainers: readonly SiteTrainer[], sample: readonly string[]): number[] {
  return sample.map((name) => trainers[Number(name.slice(5))].value);
}

/**
 * A sampled round's adapter by hand: Σ trunc(SCALE·v) over the sample's values (no clipping: norms ≪ C) plus the
 * round's noise on the grid (σ·SCALE, drawn from `seed`), divided by q·N·SCALE, added to the base in float64 and
 * rounded to float32 once.
 */
export function expectedAdapter(base: TensorList, values: readonly number[], n: number, seed: number): number[][] {
  const noise = new GaussianStream(new Uint8Array(32).fill(seed));
  const s = values.reduce((a, v) => a + Math.trunc(SCALE * v), 0);
  return base.map((t) => {
    const nz = new Float64Array(t.data.length);
    noise.roundedInto(nz, Z * 1 * SCALE);
    return Array.from(t.data, (g, j) => Math.fround(g + (s + nz[j]) / (Q * n * SCALE)));
  });
}
