// Differential privacy under secure aggregation: distributed noise. Each site clips to privacy.clipNorm, weighs 1
// and adds its share of the Gaussian noise, variance σ²/n, to its encoded vector BEFORE masking (proto/secagg/
// encoding.ts), so the sum the coordinator unmasks already carries N(0, σ²) and the coordinator adds nothing.
// Statistical checks over 20 000 coordinates and several seeds; the gRPC test uses real sites, real masking.
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { FederationClient } from '../client-sdk/client';
import type { TrainOutcome } from '../client-sdk/trainer';
import type { Manifest } from '../coordinator/checkpoints/types';
import { clientIdFor } from '../coordinator/registry';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { decodeSum, encodeUpdate, noiseShareSigma, quantisation, sumVectors, unmaskedSum, vectorLayout, type SecAggRoundConfig } from '../proto/secagg';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { PREFIX, siteDelta, startCoordinator, tempDir, testIdentity } from './harness';
import { noiseFloorRefusal } from '../client-sdk/secagg-flow';
import { asInt, deltaSite, dpRoundConfig, variance } from './secagg-dp-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const N = 10_000;
const bigAdapter = (): NamedTensor[] => [
  { name: `${PREFIX}.lora_A.weight`, dtype: 'float32', shape: [100, 100], data: new Float32Array(N) },
  { name: `${PREFIX}.lora_B.weight`, dtype: 'float32', shape: [100, 100], data: new Float32Array(N) },
];
const include = bigAdapter()
  .map((t) => t.name)
  .sort();
const roundConfig = (n: number, z: number, clipNorm = 1): SecAggRoundConfig => dpRoundConfig(bigAdapter(), n, z, clipNorm);

describe('differential privacy under secure aggregation (distributed noise)', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  it('each site adds a share of variance σ²/n; the n shares sum to variance σ² (3 seeds × 20 000 values)', () => {
    const n = 5;
    const z = 1.3;
    const cfg = roundConfig(n, z);
    const sigmaShare = noiseShareSigma(cfg);
    const { valueScale, maxAbs } = quantisation(cfg);
    // σ² = (z·Δ)², Δ = C·s + √d: the clipped update on the grid plus one step per value of stochastic rounding.
    const sigma = z * (cfg.clipNorm * valueScale + Math.sqrt(cfg.vectorLength - 1));
    expect(sigmaShare).to.be.closeTo(sigma / Math.sqrt(n), 1e-6 * sigma);
    // Headroom: a clipped value plus NOISE_TAIL (10) share deviations stays within the per-site range.
    expect(cfg.clipNorm * valueScale + (10 * (z * cfg.clipNorm * valueScale)) / Math.sqrt(n)).to.be.at.most(maxAbs * (1 + 1e-9));
    const zero = bigAdapter();
    for (let seed = 0; seed < 3; seed++) {
      // A zero update encodes to exactly 0 before noise, so what a site sends is its noise share alone.
      const vs = Array.from({ length: n }, () => encodeUpdate(zero, 1, cfg, new Uint8Array(randomBytes(32)), new Uint8Array(randomBytes(32))));
      for (const v of vs) {
        const share = variance(asInt(v).subarray(1));
        expect(share.variance / sigmaShare ** 2, `seed ${seed} share`).to.be.within(0.95, 1.05);
      }
      const sum = variance(asInt(sumVectors(vs)).subarray(1));
      expect(Math.abs(sum.mean)).to.be.below((5 * sigma) / Math.sqrt(2 * N));
      expect(sum.variance / sigma ** 2, `seed ${seed} sum`).to.be.within(0.95, 1.05);
    }
    // Same seeds, same vector: the noise is a function of the (secret) seed only.
    const s1 = new Uint8Array(32).fill(7);
    expect(Buffer.from(encodeUpdate(zero, 1, cfg, s1, s1).buffer).equals(Buffer.from(encodeUpdate(zero, 1, cfg, s1, s1).buffer))).to.equal(true);
    // Without noise a zero update stays zero: the noise above came from the shares.
    const quiet = encodeUpdate(zero, 1, { ...cfg, noiseMultiplier: 0 }, s1);
    expect(
      asInt(quiet)
        .subarray(1)
        .every((x) => x === 0),
    ).to.equal(true);
  });

  it('over gRPC with 6 real sites, one dropping before its masked input: every masked vector carried its share, the committed adapter has the sum’s noise, the manifest the effective z', async () => {
    const n = 6;
    const z = 1;
    const C = 1;
    const h = await startCoordinator(
      await tempDir('dp-secagg'),
      { total: 1, minClients: n, minUpdates: 5, clientsPerRound: n, deadlineMs: 30_000, maxAttempts: 1 },
      { secagg: { enabled: true, stageTimeoutMs: 20_000 }, privacy: { enabled: true, clipNorm: C, noiseMultiplier: z } },
      { initialAdapter: bigAdapter },
    );
    dirs.push(h.runDir);
    const names = Array.from({ length: n }, (_, i) => `dp-${i}`);
    const encoded = new Map<string, Uint32Array>();
    const clients = names.map((name) =>
      deltaSite(h.address, name, 10 + name.length, {
        observeSecAggInput: (_t, x) => encoded.set(clientIdFor(name), x.slice()),
        beforeSecAggStage: async (stage) => {
          if (name === 'dp-0' && stage === 'maskedInput') {
            await clients[0].stop();
            throw new Error('test drops dp-0 before its masked input');
          }
        },
      }),
    );
    const runs = clients.map((c) => c.run().catch(() => undefined));
    const final = await h.coordinator.done;
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all(runs);
    await h.coordinator.stop(500);
    const m: Manifest = final.manifest;
    const sa = m.secureAggregation!;
    expect(sa.survivors).to.have.length(n - 1);
    expect(sa).to.include({ clipNorm: C, weightCap: 1 });
    const zEff = z * Math.sqrt((n - 1) / n);
    expect(m.privacy).to.deep.include({ noiseAddedBy: 'sites', noiseMultiplier: z, effectiveNoiseMultiplier: zEff, sigma: zEff * C, rounds: 1 });
    expect(m.privacy!.epsilon).to.equal(epsilonSpent([{ q: 1, z: zEff, steps: 1 }], 1e-5));

    const cfg: SecAggRoundConfig = { ...roundConfig(n, z, C), selected: [...sa.selected], threshold: sa.threshold };
    const { valueScale } = quantisation(cfg);
    const sigmaShare = noiseShareSigma(cfg);
    const base = bigAdapter();
    // Each survivor's vector, as it was before masking, deviates from its clipped, scaled update by its share.
    const clipped = new Map<string, Float64Array>();
    for (const id of sa.survivors) {
      const name = names.find((x) => clientIdFor(x) === id)!;
      const d = siteDelta(name, base);
      const layout = vectorLayout(d, include);
      let sq = 0;
      for (const e of layout.entries) for (const x of d[e.tensor].data) sq += x * x;
      const c = Math.min(1, C / Math.sqrt(sq));
      const v = new Float64Array(layout.length - 1);
      for (const e of layout.entries) d[e.tensor].data.forEach((x, i) => (v[e.offset - 1 + i] = c * x));
      clipped.set(id, v);
      const x = asInt(encoded.get(id)!);
      expect(x[0]).to.equal(quantisation(cfg).weightScale); // weight 1
      const dev = Float64Array.from(v, (y, i) => x[i + 1] - y * valueScale);
      expect(variance(dev).variance / sigmaShare ** 2, id).to.be.within(0.95, 1.05);
    }
    // The unmasked sum is exactly the sum of those vectors (the noise went in before masking) ...
    const summed = sumVectors(sa.survivors.map((id) => encoded.get(id)!));
    expect(unmaskedSum(summed, cfg, base).totalWeight).to.equal(n - 1);
    const decoded = decodeSum(summed, cfg, base).adapter;
    for (const t of decoded)
      expect(Buffer.from(t.data.buffer).equals(Buffer.from(final.adapter.find((a) => a.name === t.name)!.data.buffer)), t.name).to.equal(true);
    // ... and the committed adapter minus the noiseless mean of the clipped updates has variance (z_eff·Δ/(s·k))².
    const k = n - 1;
    const diffs: number[] = [];
    const layout = vectorLayout(base, include);
    for (const e of layout.entries) {
      const got = final.adapter.find((t) => t.name === e.name)!.data;
      for (let i = 0; i < e.size; i++) {
        let mean = 0;
        for (const v of clipped.values()) mean += v[e.offset - 1 + i];
        diffs.push(got[i] - mean / k);
      }
    }
    const want = (Math.sqrt(k) * sigmaShare) / valueScale / k;
    expect(variance(diffs).variance / want ** 2).to.be.within(0.95, 1.05);
  });

  it('a site with a noise floor refuses plain tasks and SecAgg tasks with less noise, before training; the others commit without it', async () => {
    expect(noiseFloorRefusal(undefined, undefined)).to.equal(null);
    expect(noiseFloorRefusal(0.5, undefined)).to.equal(null);
    expect(noiseFloorRefusal(undefined, 1)).to.match(/not under secure aggregation/);
    expect(noiseFloorRefusal(0, 1)).to.match(/noise multiplier 0 is below this site's floor 1/);
    expect(noiseFloorRefusal(1, 1)).to.equal(null);
    const n = 6;
    const h = await startCoordinator(
      await tempDir('dp-floor'),
      { total: 1, minClients: n, minUpdates: 5, clientsPerRound: n, deadlineMs: 4000, maxAttempts: 1 },
      { secagg: { enabled: true, stageTimeoutMs: 20_000 }, privacy: { enabled: true, clipNorm: 1, noiseMultiplier: 1 } },
    );
    dirs.push(h.runDir);
    const names = Array.from({ length: n }, (_, i) => `floor-${i}`);
    let trainedByStrict = false;
    const failed: string[] = [];
    const clients = names.map((name, i) => {
      const strict = i === 0;
      const c = new FederationClient({
        address: h.address,
        name,
        identity: testIdentity(name),
        minNoiseMultiplier: strict ? 2 : 0.5,
        trainer: {
          backend: 'test',
          train: async (global: TensorList): Promise<TrainOutcome> => {
            if (strict) trainedByStrict = true;
            const d = siteDelta(name, global);
            return { adapter: global.map((t, k) => ({ ...t, data: t.data.map((x, j) => x + d[k].data[j]) })), numExamples: 5, metrics: {} };
          },
        },
      });
      if (strict) c.on('taskFailed', (e) => failed.push(e.error));
      return c;
    });
    const runs = clients.map((c) => c.run().catch(() => undefined));
    const final = await h.coordinator.done;
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all(runs);
    await h.coordinator.stop(500);
    expect(failed).to.deep.equal(["refused: the task's noise multiplier 1 is below this site's floor 2"]);
    expect(trainedByStrict).to.equal(false);
    expect(final.manifest.secureAggregation!.survivors).to.have.length(n - 1);
    expect(final.manifest.secureAggregation!.survivors).to.not.include(clientIdFor('floor-0'));
    expect(final.manifest.privacy!.effectiveNoiseMultiplier).to.equal(Math.sqrt((n - 1) / n));
  });
});
