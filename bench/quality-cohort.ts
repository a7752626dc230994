// Cross-device simulation for the learning-quality benchmark (bench/QUALITY.md, run 15): many small sites, a cohort
// sampled each round, at the cost of a cohort's worth of gRPC clients rather than one per site.
//
//   * Population: the split's pooled training e-mails in a seeded order (splitSeed), cut into N index ranges of
//     `perSite` e-mails; virtual site i owns range i and nothing else.
//   * Cohort: drawn per round from a seeded stream (the run seed), all rounds up front, so both arms of a
//     comparison train the same sites in the same rounds. 'poisson': each site independently with probability q
//     (the sampled Gaussian mechanism the accountant analyses); 'fixed': exactly m sites without replacement (plain
//     FedAvg's usual cohort, no amplification claimed).
//   * Slots: K real federation clients (FederationClient over real gRPC), every one in every round. Slot j trains
//     cohort member j of the round on that site's e-mails, on one of COHORT_TRAINERS shared trainers; a slot with
//     no member (a Poisson cohort smaller than K) returns the global adapter unchanged, a zero update. Under DP-FedAvg every update weighs 1 and the
//     coordinator divides the noised sum of clipped updates by the number of updates, K: a constant fixed before
//     any draw, i.e. McMahan et al.'s fixed-denominator estimator (a server rate of K/m scales it to 1/m).
//   * Privacy: the coordinator's manifest charges q = 1 (it names its participants, the slots, and cannot know how
//     they were chosen). The cohort's membership stays with the sampler here, so the released adapters are those of
//     the sampled Gaussian mechanism at rate q: `sampledEpsilon` is that figure, from the project's accountant.
import type { SftData } from '../client-sdk/sft/lora-trainer';
import type { SftExample } from '../client-sdk/sft/types';
import type { Trainer } from '../client-sdk/trainer';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { Prng, hashString } from '../proto/prng';

/** The split the population is cut from: the demo's 5 sites (their pooled training e-mails; the same held-out set). */
export const COHORT_POOL_CLIENTS = 5;

export interface CohortSpec {
  /** Virtual sites in the population (N). */
  readonly sites: number;
  /** Training e-mails each site owns (its index range). */
  readonly perSite: number;
  /** Expected cohort size m (Poisson: q = m / N) or the exact one ('fixed'). */
  readonly cohort: number;
  readonly sampling: 'poisson' | 'fixed';
  /** Federation clients (K ≥ every round's cohort; 'fixed': K = m). Fixed in the configuration, before any draw. */
  readonly slots: number;
}

/** The population: N disjoint index ranges of the seeded pooled training order. */
export function virtualSites(train: readonly SftExample[], spec: CohortSpec, splitSeed: number): SftExample[][] {
  if (!(Number.isSafeInteger(spec.sites) && spec.sites >= 1 && Number.isSafeInteger(spec.perSite) && spec.perSite >= 1))
    throw new RangeError(`cohort: sites ${spec.sites} and perSite ${spec.perSite} must be positive integers`);
  if (spec.sites * spec.perSite > train.length)
    throw new RangeError(`cohort: ${spec.sites} sites × ${spec.perSite} e-mails exceed the ${train.length} training e-mails`);
  const order = new Prng(splitSeed, hashString('cohort:population')).permutation(train.length);
  return Array.from({ length: spec.sites }, (_, i) => order.slice(i * spec.perSite, (i + 1) * spec.perSite).map((k) => train[k]));
}

/** The sampling rate the accountant sees: m / N for 'poisson'; 'fixed' claims none (1). */
export function samplingRate(spec: CohortSpec): number {
  return spec.sampling === 'poisson' ? spec.cohort / spec.sites : 1;
}

/**
 * Each round's cohort (index 0 = round 1), site indices ascending. A stream per round, so round r's draw does not
 * depend on how many rounds are drawn. Throws when a round would need more than K slots (never for the recorded
 * seeds: K sits 6 standard deviations above m, so the chance over 100 rounds is under 1e-7, far below δ).
 */
export function drawCohorts(spec: CohortSpec, seed: number, rounds: number): number[][] {
  const q = spec.cohort / spec.sites;
  if (!(q > 0 && q <= 1)) throw new RangeError(`cohort: ${spec.cohort} of ${spec.sites} sites is not a rate in (0, 1]`);
  const out: number[][] = [];
  for (let r = 1; r <= rounds; r++) {
    const prng = new Prng(seed, hashString(`cohort:round:${r}`));
    const members =
      spec.sampling === 'poisson'
        ? Array.from({ length: spec.sites }, (_, i) => i).filter(() => prng.nextFloat() < q)
        : prng
            .permutation(spec.sites)
            .slice(0, spec.cohort)
            .sort((a, b) => a - b);
    if (members.length > spec.slots) throw new Error(`cohort: round ${r} drew ${members.length} sites for ${spec.slots} slots`);
    out.push(members);
  }
  return out;
}

/** ε at δ after `rounds` rounds of the sampled Gaussian mechanism at the cohort's rate (the project's accountant). */
export function sampledEpsilon(spec: CohortSpec, z: number, rounds: number, delta: number): number {
  return epsilonSpent([{ q: samplingRate(spec), z, steps: rounds }], delta);
}

/**
 * Trainers the slots share: each engine trainer opens its own WebGPU device, and a process gets fewer Vulkan devices
 * than a cohort has slots (92 failed at vkCreateDevice on the H200; 50 per process ran in runs 9-12). A round's
 * members take turns on them (one GPU serialises the work anyway). Each holds the array its trainer reads its
 * e-mails from afresh every round, and a queue so that one member at a time fills and trains it.
 * FEDTUNE_BENCH_TRAINERS (1-64) sets another count, so that more cells fit on one GPU at once (run 25's pilot).
 */
export const COHORT_TRAINERS = trainerCount(process.env.FEDTUNE_BENCH_TRAINERS);

function trainerCount(v: string | undefined): number {
  if (v === undefined || v === '') return 24;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`FEDTUNE_BENCH_TRAINERS must be an integer in [1, 64], not ${JSON.stringify(v)}`);
  return n;
}

export class SharedTrainer {
  private queue: Promise<unknown> = Promise.resolve();
  constructor(
    readonly trainer: Trainer,
    readonly pool: SftExample[],
  ) {}

  /** Runs `f` once every earlier call has settled (whatever its outcome). */
  exclusive<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** A shared trainer seen through another `train` (every other member, bound, is the trainer's own). */
export function withTrain(trainer: Trainer, train: Trainer['train']): Trainer {
  return new Proxy(trainer, {
    get: (target, key) => {
      if (key === 'train') return train;
      const v: unknown = Reflect.get(target, key, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * Slot `slot`'s trainer: in each round it trains its cohort member's e-mails on shared trainer slot mod P (loaded
 * into that trainer's array under its queue); with no member it returns the global adapter unchanged
 * (numExamples 1: FedAvg refuses 0; DP-FedAvg weighs every update 1 anyway) and no metrics, so the manifest's
 * clients.* means (clients.update_norm) are over the round's real members only.
 */
export function slotTrainer(shared: readonly SharedTrainer[], slot: number, cohorts: readonly number[][], sites: readonly SftExample[][]): Trainer {
  const s = shared[slot % shared.length];
  const train: Trainer['train'] = async (global, plan, signal, onStep) => {
    const members = cohorts[plan.round - 1];
    if (!members) throw new Error(`cohort: no draw for round ${plan.round}`);
    const site = members[slot];
    if (site === undefined) {
      return { adapter: global.map((t) => ({ ...t, data: t.data.slice() })), numExamples: 1, metrics: {} };
    }
    return s.exclusive(() => {
      s.pool.splice(0, s.pool.length, ...sites[site]);
      return s.trainer.train(global, plan, signal, onStep);
    });
  };
  return withTrain(s.trainer, train);
}

/** A shared trainer's starting data: a mutable array (first filled with site 0, so trainers that check for data accept it). */
export function slotData(sites: readonly SftExample[][], choices: SftData['choices']): { data: SftData; pool: SftExample[] } {
  const pool = [...sites[0]];
  return { data: { train: pool, eval: [], choices }, pool };
}
