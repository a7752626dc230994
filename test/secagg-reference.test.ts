// SecAgg's result against an independent reference: the float64 weighted mean of the survivors' deltas, computed
// here from the documented semantics only (weight w = min(n, weightCap) / weightCap, clip to clipNorm), with no
// project code on the reference side. The bound is the quantisation's, derived from the README's description of the
// encoding (b = 32 − ⌈log2 maxClients⌉ bits, values on a grid of clipNorm / (2^(b−1) − 1), weights on a grid of
// 1 / (2^(b−1) − 1), stochastic rounding to a neighbouring grid point). Each case also checks that the UNWEIGHTED
// mean falls outside that bound, so the test fails if SecAgg forgot the weights.
import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';
import type { NamedTensor } from '../proto/tensors';
import { chooseGraph, decodeSum, encodeUpdate, vectorLayout, type SecAggRoundConfig } from '../proto/secagg';
import { simulateRound, type SimClient, type SimDrops } from '../proto/secagg/simulate';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const seedOf = (s: string): Uint8Array => new Uint8Array(createHash('sha256').update(s).digest());
const idOf = (i: number): string => `s${String(i).padStart(3, '0')}`;

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296) * 2 - 1;
}

interface Case {
  readonly n: number;
  readonly examples: (i: number) => number;
  readonly drops: SimDrops;
  /** Scale of the deltas: with clipNorm 1, some sites exceed it and are clipped. */
  readonly scale: number;
}

async function check(c: Case): Promise<void> {
  const weightCap = 5000;
  const clipNorm = 1;
  const maxClients = 1024;
  const ids = Array.from({ length: c.n }, (_, i) => idOf(i));
  const r0 = lcg(9);
  const global: NamedTensor[] = [
    { name: 'l.lora_A', dtype: 'float32', shape: [2, 3], data: Float32Array.from({ length: 6 }, r0) },
    { name: 'l.lora_B', dtype: 'float32', shape: [5, 4], data: Float32Array.from({ length: 20 }, r0) },
  ];
  const include = ['l.lora_B'];
  const chosen = chooseGraph(c.n);
  const cfg: SecAggRoundConfig = {
    roundTag: 'ref/r1/a0',
    baseManifestSha256: 'cd'.repeat(32),
    selected: ids,
    threshold: chosen.threshold,
    graph: chosen.graph,
    clipNorm,
    weightCap,
    maxClients,
    include,
    vectorLength: vectorLayout(global, include).length,
  };
  const deltas = ids.map((_, i) => {
    const r = lcg(1000 + i);
    return Float32Array.from({ length: 20 }, () => c.scale * r());
  });
  const identities = ids.map((id) => nacl.sign.keyPair.fromSeed(seedOf(`identity-${id}`)));
  const clients: SimClient[] = ids.map((id, i) => ({
    id,
    identitySecretKey: identities[i].secretKey,
    identityPublicKey: identities[i].publicKey,
    input: () => encodeUpdate([global[0], { ...global[1], data: deltas[i] }], c.examples(i), cfg, seedOf(`rounding-${id}`)),
  }));
  const res = await simulateRound(cfg, clients, c.drops);
  const got = decodeSum(res.sum, cfg, global).adapter[1].data;

  // The reference, in float64, from the survivors alone.
  const survivors = res.survivors.map((id) => ids.indexOf(id));
  const gone = new Set([...(c.drops.beforeAdvertise ?? []), ...(c.drops.beforeShares ?? []), ...(c.drops.beforeInput ?? [])]);
  expect(res.survivors).to.deep.equal(ids.filter((id) => !gone.has(id)));
  const w = survivors.map((i) => Math.min(c.examples(i), weightCap) / weightCap);
  const clipped = survivors.map((i) => {
    const norm = Math.sqrt(deltas[i].reduce((a, x) => a + x * x, 0));
    const f = norm > clipNorm ? clipNorm / norm : 1;
    return Array.from(deltas[i], (x) => x * f);
  });
  const W = w.reduce((a, b) => a + b, 0);
  const bits = 32 - Math.ceil(Math.log2(maxClients));
  const levels = 2 ** (bits - 1) - 1;
  const valueStep = clipNorm / levels;
  const weightStep = 1 / levels;
  const N = survivors.length;
  const wMin = W - N * weightStep; // smallest the decoded total weight can be
  let worst = 0;
  let unweightedOutside = 0;
  for (let k = 0; k < 20; k++) {
    const num = survivors.reduce((a, _, j) => a + w[j] * clipped[j][k], 0);
    const expected = global[1].data[k] + num / W;
    const bound = (N * valueStep) / wMin + (Math.abs(num) * N * weightStep) / (W * wMin) + Math.abs(expected) * 2 ** -23;
    const err = Math.abs(got[k] - expected);
    worst = Math.max(worst, err / bound);
    expect(err, `element ${k}: |${got[k]} − ${expected}| within ${bound}`).to.be.at.most(bound);
    const unweighted = global[1].data[k] + survivors.reduce((a, _, j) => a + clipped[j][k], 0) / N;
    if (Math.abs(unweighted - expected) > 10 * bound) unweightedOutside++;
  }
  // The weights matter in this case: an unweighted mean would fail almost every element.
  expect(unweightedOutside).to.be.at.least(18);
  expect(worst).to.be.below(1);
}

describe('secagg against an independent float64 weighted mean', () => {
  it('full graph, 7 sites, unequal weights (one capped), no drops', async () => {
    const ex = [3, 40, 700, 5000, 9000, 120, 2500];
    await check({ n: 7, examples: (i) => ex[i], drops: {}, scale: 0.05 });
  });

  it('full graph, 9 sites, clipped updates, drops before shares, before input and before unmask', async () => {
    const ex = [10, 4000, 25, 800, 1, 3000, 60, 2200, 150];
    await check({ n: 9, examples: (i) => ex[i], drops: { beforeShares: [idOf(1)], beforeInput: [idOf(4)], beforeUnmask: [idOf(6)] }, scale: 0.5 });
  });

  it('SecAgg+ graph, 40 sites, weights 1..4,000, drops at every stage', async () => {
    await check({
      n: 40,
      examples: (i) => 1 + ((i * 977) % 4000),
      scale: 0.1,
      drops: { beforeAdvertise: [idOf(3)], beforeShares: [idOf(11)], beforeInput: [idOf(20), idOf(21)], beforeUnmask: [idOf(30)] },
    });
  });
});
