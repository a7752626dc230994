// The weight and norm gate on the unmasked SecAgg sum (proto/secagg/gate.ts; issue 13 #10). Honest inputs at the
// edges (one example each, every update clipped to exactly S) always pass; a dishonest site's weight slot or an
// input above the clip norm fails the sum with a reason naming the bound. Over gRPC: one real SDK site whose
// encoded vector is tampered before masking makes the real coordinator fail the round with that reason, and no
// version is committed.
import { promises as fs } from 'node:fs';
import type { FederationClientOptions } from '../client-sdk/client-options';
import { startCoordinator, tempDir } from './harness';
import { constantSites } from './sites-kit';
import { ProtocolError } from '../proto/errors';
import { encodeUpdate, quantisation, sumVectors, unmaskedSum, vectorLayout, type SecAggRoundConfig } from '../proto/secagg';
import type { NamedTensor } from '../proto/tensors';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const layer = (n: number, f: (i: number) => number): NamedTensor[] => [
  { name: 'a.lora_A.weight', dtype: 'float32', shape: [n], data: Float32Array.from({ length: n }, (_, i) => f(i)) },
  { name: 'a.lora_B.weight', dtype: 'float32', shape: [n], data: Float32Array.from({ length: n }, (_, i) => f(i + n)) },
];

function config(global: NamedTensor[], n: number): SecAggRoundConfig {
  const include = global.map((t) => t.name).sort();
  return {
    roundTag: 'gate',
    baseManifestSha256: 'ab'.repeat(32),
    selected: Array.from({ length: n }, (_, i) => `s${i}`),
    threshold: Math.floor(n / 2) + 1,
    graph: { kind: 'full' },
    clipNorm: 0.5,
    weightCap: 1000,
    maxClients: 64,
    include,
    vectorLength: vectorLayout(global, include).length,
  };
}

const seed = (i: number): Uint8Array => new Uint8Array(32).fill(i + 1);

function gateError(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).to.be.instanceOf(ProtocolError);
    return (e as Error).message;
  }
  return '';
}

describe('secagg weight and norm gate', () => {
  const global = layer(500, () => 0);
  const n = 7;
  const cfg = config(global, n);
  // Each site's update points the same way and is far above S: all clipped to exactly S, so the norms add up.
  const big = (i: number): NamedTensor[] => layer(500, (j) => (j % 2 ? 3 : -3) * (1 + (i % 3)));

  it('passes honest sums at the edges: every weight at 1/cap, or every weight at 1, every update clipped to S', () => {
    for (const examples of [1, 1000, 5000]) {
      const sum = sumVectors(Array.from({ length: n }, (_, i) => encodeUpdate(big(i), examples, cfg, seed(i))));
      expect(() => unmaskedSum(sum, cfg, global, n)).to.not.throw();
    }
  });

  it('passes honest sums carrying DP noise shares (noise multiplier 1 and 20), and still refuses an out-of-range weight there', () => {
    for (const noiseMultiplier of [1, 20]) {
      const noisy = { ...cfg, noiseMultiplier };
      const xs = Array.from({ length: n }, (_, i) => encodeUpdate(big(i), 1, noisy, seed(i), seed(50 + i)));
      expect(() => unmaskedSum(sumVectors(xs), noisy, global, n)).to.not.throw();
      xs[0][0] = -xs[0][0] >>> 0;
      expect(gateError(() => unmaskedSum(sumVectors(xs), noisy, global, n))).to.match(/secagg gate: total weight -?\d+ is outside/);
    }
  });

  it('refuses a weight slot that drives the total out of range (negative, oversized), naming the range', () => {
    const { weightScale } = quantisation(cfg);
    const xs = Array.from({ length: n }, (_, i) => encodeUpdate(big(i), 10, cfg, seed(i)));
    const honestOthers = xs.slice(1).reduce((t, x) => t + x[0], 0);
    // The total made tiny (1 unit) would scale the published mean by about 2^21 without the gate.
    xs[0][0] = (1 - honestOthers) >>> 0;
    expect(gateError(() => unmaskedSum(sumVectors(xs), cfg, global, n))).to.match(
      /secagg gate: total weight 1 is outside \[\d+, \d+\], the range 7 sites .* can give: a weight slot was out of range/,
    );
    xs[0][0] = n * weightScale; // weight n for one site: the total exceeds what n sites of weight ≤ 1 can give
    expect(gateError(() => unmaskedSum(sumVectors(xs), cfg, global, n))).to.match(/secagg gate: total weight \d+ is outside/);
  });

  it('refuses a sum whose norm only an input above the clip norm can reach', () => {
    const xs = Array.from({ length: n }, (_, i) => encodeUpdate(big(i), 1000, cfg, seed(i)));
    // A site that skipped clipping (or scaled its update 2N times): its values, not its weight, are out of bounds.
    const cheat = new Int32Array(xs[0].buffer);
    for (let i = 1; i < cheat.length; i++) cheat[i] *= 2 * n;
    expect(gateError(() => unmaskedSum(sumVectors(xs), cfg, global, n))).to.match(
      /secagg gate: the sum's norm .* exceeds .*an input exceeded the clip norm 0\.5/,
    );
  });

  it('over gRPC: a site whose encoded update is inflated before masking fails the round at the gate; nothing is committed', async function () {
    this.timeout(60_000);
    const dir = await tempDir('secagg-gate');
    const rounds = { total: 1, minClients: 5, minUpdates: 5, clientsPerRound: 5, deadlineMs: 30_000, maxAttempts: 1 };
    const h = await startCoordinator(dir, rounds, { secagg: { enabled: true, threshold: 3, stageTimeoutMs: 20_000 } });
    const failures: string[] = [];
    h.coordinator.on('roundFailed', (e) => failures.push(e.reason));
    // The dishonest site 0: its SDK masks whatever this vector holds, so it scales its values 10^5 times (its
    // update's norm 0.037 becomes 3,700, far past the clip norm 10 times the 5 sites' total weight).
    const inflate: FederationClientOptions['observeSecAggInput'] = (_t, x) =>
      void new Int32Array(x.buffer, x.byteOffset, x.length).forEach((v, j, a) => j > 0 && (a[j] = v * 100_000));
    const sites = constantSites(h.address, 'gate', 5, (i) => (i === 0 ? { observeSecAggInput: inflate } : {}));
    const runs = sites.map((c) => c.run().catch(() => undefined));
    await h.coordinator.done.catch(() => undefined);
    await Promise.all(sites.map((c) => c.stop()));
    await Promise.all(runs);
    const versions = (await h.coordinator.store.list()).map((m) => m.version);
    await h.coordinator.stop(500);
    await fs.rm(dir, { recursive: true, force: true });
    expect(failures, JSON.stringify({ failures, versions })).to.have.length(1);
    expect(failures[0]).to.match(/aggregation failed: secagg gate: the sum's norm .* exceeds/);
    expect(versions).to.deep.equal([0]);
  });
});
