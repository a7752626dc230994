// Adaptive clipping under secure aggregation: each site appends its bit 1[‖Δ‖ ≤ C_t] on the count grid with its share
// of the count's noise, N(0, σ_b²/n), before masking (proto/secagg/encoding.ts), so the coordinator reads the noised
// count from the unmasked sum and never sees a site's norm or bit. Checked: the count's noise has variance σ_b² over
// 4,000 rounds of 5 sites (and σ_b²·k/n when k survive); the coordinator's C is the rule's from the same count; the
// gate refuses a count no honest sites give; and over gRPC with 5 real sites for two rounds, each site's vector
// carried its bit, the manifests record C_t, b̄ and C_{t+1} from the sum, round 2's SecAgg config clips to round 1's
// C_{t+1} and ε is the accountant's at z.
import { promises as fs } from 'node:fs';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { nextClipNorm, unclippedFraction, updateNoiseMultiplier } from '../coordinator/privacy/adaptive-clip';
import { clientIdFor } from '../coordinator/registry';
import { DpStrategy, MAX_CLIP_NORM } from '../coordinator/strategy/dp';
import { FedAvg } from '../coordinator/strategy/fedavg';
import type { ServerState } from '../coordinator/strategy/strategy';
import { GaussianStream } from '../proto/gaussian';
import {
  checkAggregate,
  countScale,
  countShareSigma,
  encodeUpdate,
  jointNoiseMultiplier,
  sumVectors,
  unmaskedSum,
  type SecAggRoundConfig,
} from '../proto/secagg';
import { taskNoiseFloorRefusal } from '../client-sdk/secagg-flow';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { PREFIX, siteDelta, smallAdapter, startCoordinator, tempDir } from './harness';
import { asInt, deltaSite, dpRoundConfig, variance } from './secagg-dp-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const adapter = (): NamedTensor[] => [{ name: `${PREFIX}.lora_B.weight`, dtype: 'float32', shape: [2, 2], data: new Float32Array(4) }];
/** An update of norm `norm` (four values of norm/2). */
const ofNorm = (norm: number): TensorList => [{ ...adapter()[0], data: new Float32Array(4).fill(norm / 2) }];
const seedOf = (...xs: number[]): Uint8Array => {
  const s = new Uint8Array(32);
  xs.forEach((x, i) => new DataView(s.buffer).setUint32(4 * i, x));
  return s;
};
/** The round's config: z for 1 overall after the count's σ_b (z_Δ), the count value on. */
const config = (n: number, clipCountNoise: number, clipNorm = 1): SecAggRoundConfig =>
  dpRoundConfig(adapter(), n, updateNoiseMultiplier(1, clipCountNoise), clipNorm, clipCountNoise);

describe('adaptive clipping under secure aggregation (the sites’ noised count)', function () {
  this.timeout(120_000);

  it('the count’s noise has variance σ_b² (4,000 rounds of 5 sites), σ_b²·k/n when k of n survive; bits read exactly', () => {
    const n = 5;
    const sigmaB = 2.5;
    const cfg = config(n, sigmaB);
    expect(cfg.vectorLength).to.equal(1 + 4 + 1);
    const norms = [0.5, 0.9, 1.1, 2, 3]; // 2 under C = 1
    const all: number[] = [];
    const four: number[] = [];
    for (let t = 0; t < 4000; t++) {
      const xs = norms.map((x, i) => encodeUpdate(ofNorm(x), 10, cfg, seedOf(1, t, i), seedOf(2, t, i)));
      const full = unmaskedSum(sumVectors(xs), cfg, adapter(), n);
      all.push(full.noisedCount! - 2);
      // Site 0 (a bit of 1) dropped: its share and its bit are missing; one under C remains.
      four.push(unmaskedSum(sumVectors(xs.slice(1)), cfg, adapter(), n - 1).noisedCount! - 1);
    }
    const a = variance(all);
    const b = variance(four);
    // 4,000 samples: the variance's relative sd is √(2/3999) ≈ 2.2%; 4σ bounds.
    expect(a.variance / sigmaB ** 2).to.be.within(0.91, 1.09);
    expect(b.variance / (sigmaB ** 2 * (4 / 5))).to.be.within(0.91, 1.09);
    expect(Math.abs(a.mean)).to.be.below((4 * sigmaB) / Math.sqrt(4000));
    expect(Math.abs(b.mean)).to.be.below((4 * sigmaB * Math.sqrt(0.8)) / Math.sqrt(4000));
    // Each site's value is its bit (K or 0) plus its share, the stream's first draw rounded on the count grid.
    const K = countScale(cfg);
    norms.forEach((x, i) => {
      const v = asInt(encodeUpdate(ofNorm(x), 10, cfg, seedOf(1, 0, i), seedOf(2, 0, i)));
      const g = new Float64Array(1);
      new GaussianStream(seedOf(2, 0, i)).roundedInto(g, countShareSigma(cfg));
      expect(v[5]).to.equal((x <= 1 ? K : 0) + g[0]);
    });
  });

  it('the coordinator’s C is the rule’s from the sites’ count, as the plain tier computes it; a site’s noise floor is held to the joint z; a count no honest sites give is refused', () => {
    const n = 5;
    const cfg = config(n, 1, 0.75);
    const xs = [0.5, 0.7, 0.8, 2, 0.1].map((x, i) => encodeUpdate(ofNorm(x), 10, cfg, seedOf(3, i), seedOf(4, i)));
    const sum = unmaskedSum(sumVectors(xs), cfg, adapter(), n);
    const K = countScale(cfg);
    let shares = 0;
    for (let i = 0; i < n; i++) {
      const g = new Float64Array(1);
      new GaussianStream(seedOf(4, i)).roundedInto(g, countShareSigma(cfg));
      shares += g[0];
    }
    expect(sum.noisedCount).to.equal((3 * K + shares) / K);
    const adaptive = { targetQuantile: 0.5, learningRate: 0.2, countNoise: 1 };
    const dp = new DpStrategy(new FedAvg(), { clipNorm: 2, noiseMultiplier: 1, adaptive });
    const state: ServerState = { tensors: [{ name: 'clip/norm', dtype: 'float32', shape: [1], data: Float32Array.of(0.75) }], round: 3 };
    dp.aggregate(adapter(), { ...sum, noised: true }, state);
    const fraction = unclippedFraction(sum.noisedCount!, n, n);
    expect(state.adaptiveClip).to.deep.include({
      clipNorm: 0.75,
      unclippedFraction: fraction,
      nextClipNorm: nextClipNorm(0.75, fraction, adaptive, MAX_CLIP_NORM),
    });
    // The plain tier's own computation on the same count: Σ b over m, centred, is the same number.
    expect(fraction).to.equal((sum.noisedCount! - n / 2) / n + 0.5);
    expect(Math.abs(fraction - sum.noisedCount! / n)).to.be.below(1e-15);
    // A noised sum without the sites' count is refused rather than guessed.
    const bare = { ...sum, noised: true, noisedCount: undefined };
    expect(() => dp.aggregate(adapter(), bare, { tensors: [], round: 1 })).to.throw(/noised count of unclipped updates/);
    // A site's noise floor is held to the round's joint multiplier, not the update's z_Δ: the count spends part of it.
    expect(jointNoiseMultiplier(updateNoiseMultiplier(0.749, 2.5), 2.5)).to.be.closeTo(0.749, 1e-12);
    expect(jointNoiseMultiplier(1.2)).to.equal(1.2);
    const zDelta = updateNoiseMultiplier(1, 1); // 1.155: the round is z 1
    const task = { noise_multiplier: zDelta, clip_count_noise: 1 };
    expect(zDelta).to.be.above(1.1);
    expect(taskNoiseFloorRefusal(task, 1.1)).to.match(/below this site's floor 1.1/);
    expect(taskNoiseFloorRefusal(task, 0.99)).to.equal(null);
    expect(taskNoiseFloorRefusal({ ...task, clip_count_noise: 0 }, 1.1)).to.equal(null);
    // The gate: a count far above n bits plus their noise tails.
    const bad = sumVectors(xs);
    asInt(bad)[5] = (n + 1) * K + 100 * K;
    expect(() => checkAggregate(asInt(bad), cfg, n)).to.throw(/count of unclipped updates/);
  });

  it('over gRPC with 5 real sites for two rounds: each vector carries its bit, the manifests C_t, b̄, C_{t+1} from the sum, round 2 clips to round 1’s C_{t+1}, ε at z', async () => {
    const n = 5;
    const z = 1;
    const sigmaB = 1;
    const names = Array.from({ length: n }, (_, i) => `ac-${i}`);
    // C_0 between the 3rd and 4th smallest update norms: 3 bits of 1 in round 1.
    const normOf = (name: string): number => Math.sqrt(siteDelta(name, smallAdapter(0)).reduce((s, t) => s + t.data.reduce((a, x) => a + x * x, 0), 0));
    const sorted = names.map(normOf).sort((a, b) => a - b);
    const C0 = (sorted[2] + sorted[3]) / 2;
    const h = await startCoordinator(
      await tempDir('adaclip-secagg'),
      { total: 2, minClients: n, minUpdates: 5, clientsPerRound: n, deadlineMs: 30_000, maxAttempts: 1 },
      {
        secagg: { enabled: true, stageTimeoutMs: 20_000 },
        privacy: { enabled: true, clipNorm: C0, noiseMultiplier: z, adaptiveClipping: true, clipCountNoise: sigmaB },
      },
    );
    const vectors = new Map<number, Map<string, Int32Array>>();
    const clients = names.map((name) =>
      deltaSite(h.address, name, 10, {
        observeSecAggInput: (t, x) => {
          const r = vectors.get(t.round) ?? new Map<string, Int32Array>();
          r.set(clientIdFor(name), asInt(x.slice()));
          vectors.set(t.round, r);
        },
      }),
    );
    try {
      const runs = clients.map((c) => c.run().catch(() => undefined));
      const final = await h.coordinator.done;
      await Promise.all(clients.map((c) => c.stop()));
      await Promise.all(runs);
      expect(final.manifest.version).to.equal(2);
      const store = new FsCheckpointStore(h.runDir, { readOnly: true });
      const zDelta = updateNoiseMultiplier(z, sigmaB);
      let c = C0;
      for (const v of [1, 2]) {
        const m = (await store.read(v)).manifest;
        const sa = m.secureAggregation!;
        const clip = m.privacy!.adaptiveClipping!;
        expect(sa.survivors, `v${v}`).to.have.length(n);
        expect(sa.clipNorm, `v${v} SecAgg clip`).to.equal(c);
        expect(clip.clipNorm).to.equal(c);
        expect(m.privacy).to.deep.include({ noiseAddedBy: 'sites', effectiveNoiseMultiplier: z, sigma: zDelta * c, clipNorm: c });
        expect(m.privacy!.epsilon).to.equal(epsilonSpent([{ q: 1, z, steps: v }], 1e-5));
        // The count the coordinator read: Σ of the sites' last values over the count grid of that round's config.
        const cfg: SecAggRoundConfig = { ...config(n, sigmaB, c), selected: [...sa.selected], threshold: sa.threshold, vectorLength: 0 };
        const K = countScale(cfg);
        const lasts = [...vectors.get(v)!.values()].map((x) => x[x.length - 1]);
        const bits = names.map((name) => (normOf(name) <= c ? 1 : 0) as number).reduce((a, b) => a + b, 0);
        for (const [id, x] of vectors.get(v)!) {
          const name = names.find((nm) => clientIdFor(nm) === id)!;
          expect(Math.abs(x[x.length - 1] - (normOf(name) <= c ? K : 0)), `${name} share`).to.be.below(10 * countShareSigma({ ...cfg, vectorLength: 6 }) + 1);
        }
        const count = lasts.reduce((a, b) => a + b, 0) / K;
        expect(clip.unclippedFraction, `v${v} b̄`).to.equal(unclippedFraction(count, n, n));
        expect(clip.nextClipNorm).to.equal(Math.fround(c * Math.exp(-0.2 * (clip.unclippedFraction - 0.5))));
        if (v === 1) expect(bits).to.equal(3);
        c = clip.nextClipNorm;
      }
    } finally {
      for (const cl of clients) await cl.stop().catch(() => undefined);
      await h.coordinator.stop(500);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });
});
