// What the tests of DP under SecAgg share (test/dp-secagg.test.ts, test/dp-adaptive-clip-secagg.test.ts): a DP
// round's SecAgg config over an adapter, a site training its own fixed delta (whose masked input a test may observe),
// the int32 view of an encoded vector, and a sample's mean and variance.
import { FederationClient } from '../client-sdk/client';
import type { FederationClientOptions } from '../client-sdk/client-options';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { vectorLayout, type SecAggRoundConfig } from '../proto/secagg';
import type { TensorList } from '../proto/tensors';
import { siteDelta, testIdentity } from './harness';

/**
 * A DP-FedAvg SecAgg round over every tensor of `adapter` for sites s0…s(n−1): weight 1 each, a full graph, a
 * majority threshold, clip C, noise multiplier z, and with `clipCountNoise` > 0 adaptive clipping's count value.
 */
export function dpRoundConfig(adapter: TensorList, n: number, z: number, clipNorm = 1, clipCountNoise = 0): SecAggRoundConfig {
  const include = adapter.map((t) => t.name).sort();
  return {
    roundTag: 'dp',
    baseManifestSha256: '0'.repeat(64),
    selected: Array.from({ length: n }, (_, i) => `s${i}`),
    threshold: Math.floor(n / 2) + 1,
    graph: { kind: 'full' },
    clipNorm,
    weightCap: 1,
    maxClients: 1024,
    include,
    vectorLength: vectorLayout(adapter, include, clipCountNoise > 0).length,
    noiseMultiplier: z,
    ...(clipCountNoise > 0 ? { clipCountNoise } : {}),
  };
}

export const asInt = (v: Uint32Array): Int32Array => new Int32Array(v.buffer, v.byteOffset, v.length);

export function variance(xs: ArrayLike<number>): { mean: number; variance: number } {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  const mean = s / xs.length;
  let q = 0;
  for (let i = 0; i < xs.length; i++) q += (xs[i] - mean) ** 2;
  return { mean, variance: q / (xs.length - 1) };
}

/** Trains siteDelta(name): the same update every round, from the site's name. */
export class DeltaTrainer implements Trainer {
  readonly backend = 'test';
  constructor(
    private readonly name: string,
    private readonly examples = 10,
  ) {}
  async train(global: TensorList, _plan: TrainingPlan): Promise<TrainOutcome> {
    const d = siteDelta(this.name, global);
    return { adapter: global.map((t, k) => ({ ...t, data: t.data.map((x, i) => x + d[k].data[i]) })), numExamples: this.examples, metrics: {} };
  }
}

/** A real site named `name` training DeltaTrainer(name), with the hooks a test passes (observeSecAggInput…). */
export function deltaSite(address: string, name: string, examples: number, hooks: Partial<FederationClientOptions> = {}): FederationClient {
  return new FederationClient({ address, name, identity: testIdentity(name), trainer: new DeltaTrainer(name, examples), ...hooks });
}
