// What a SecAgg round must commit, computed from its manifest's record and the vectors the sites actually encoded
// (captured at the sites: the rounding randomness is fresh and secret, so it cannot be recomputed): plain
// fixed-point FedAvg with the same quantisation, decodeSum(sumVectors(...)) over exactly the survivors.
import type { Manifest } from '../coordinator/checkpoints/types';
import { decodeSum, sumVectors, vectorLayout, type SecAggRoundConfig } from '../proto/secagg';
import type { NamedTensor, TensorList } from '../proto/tensors';

type Recorded = NonNullable<Manifest['secureAggregation']>;

/** The round's configuration as far as decoding needs it (the round tag and base hash do not enter it). */
export function recordedRoundConfig(sa: Recorded, base: TensorList, include: string[] = base.map((t) => t.name).sort()): SecAggRoundConfig {
  return {
    roundTag: 'unused',
    baseManifestSha256: '0'.repeat(64),
    selected: sa.selected,
    threshold: sa.threshold,
    graph: { kind: 'full' },
    clipNorm: sa.clipNorm,
    weightCap: sa.weightCap,
    maxClients: sa.maxClients,
    include,
    vectorLength: vectorLayout(base, include).length,
  };
}

/** The adapter plain fixed-point FedAvg commits for `vectors` (the survivors' encoded inputs) on `base`. */
export function expectedAdapter(sa: Recorded, base: TensorList, vectors: readonly Uint32Array[], include?: string[]): NamedTensor[] {
  return decodeSum(sumVectors(vectors), recordedRoundConfig(sa, base, include), base).adapter;
}
