// DP-FedAvg in the plain tier (coordinator/strategy/dp.ts, coordinator/privacy/*), over the real coordinator, real
// gRPC and real clients: each update clipped exactly, sites weighted equally, Gaussian noise added ONCE by the
// coordinator with the σ the manifest records (checked statistically over 20 000 values), ε stamped in every
// manifest and shown by `checkpoints list`, the ε budget stopping the run before the round that would exceed it,
// and invalid privacy settings refused at start naming the key.
import { promises as fs } from 'node:fs';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Coordinator } from '../coordinator/coordinator';
import { ConfigError } from '../coordinator/config';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { formatVersionTable } from '../coordinator/checkpoints/table';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { CLIP_MARGIN, DpStrategy } from '../coordinator/strategy/dp';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { SCALE } from '../coordinator/strategy/fixed-point';
import { FederationClient } from '../client-sdk/client';
import type { NamedTensor } from '../proto/tensors';
import { ConstantTrainer, PREFIX, tempDir, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const fast = { initialMs: 20, maxMs: 200, factor: 2 };
const N = 10_000;
/** Two 100×100 tensors: 20 000 values, enough to measure a variance to ±1% (1σ). */
const bigAdapter = (): NamedTensor[] => [
  { name: `${PREFIX}.lora_A.weight`, dtype: 'float32', shape: [100, 100], data: new Float32Array(N) },
  { name: `${PREFIX}.lora_B.weight`, dtype: 'float32', shape: [100, 100], data: new Float32Array(N) },
];

describe('differential privacy, plain tier (DP-FedAvg at the coordinator)', function () {
  this.timeout(60_000);
  const coordinators: Coordinator[] = [];
  const clients: FederationClient[] = [];
  const dirs: string[] = [];

  async function start(privacy: Record<string, unknown>, rounds: Record<string, unknown> = {}, logger = pino({ level: 'silent' })) {
    const runDir = await tempDir('dp');
    dirs.push(runDir);
    const config = classicConfig({
      overrides: {
        server: { port: 0 },
        run: { dir: runDir, seed: 3 },
        rounds: { total: 1, minClients: 2, minUpdates: 2, clientsPerRound: 100, deadlineMs: 20_000, maxAttempts: 2, ...rounds },
        log: { level: 'silent' },
        auth: { mode: 'tofu' },
        // Every tensor travels (ConstantTrainer moves A too): 'auto' would pick FFA-LoRA under privacy.enabled.
        lora: { aggregation: 'fedit' },
        privacy: { enabled: true, ...privacy },
      },
    });
    const c = new Coordinator({
      config,
      initialAdapter: bigAdapter,
      adapterConfig: { peft_type: 'LORA' },
      baseModel: { name: 't', sha256: '0'.repeat(64) },
      logger,
    });
    coordinators.push(c);
    const { address } = await c.start();
    return { c, address, runDir };
  }
  const site = (address: string, name: string, value: number, examples: number): FederationClient => {
    const c = new FederationClient({ address, name, identity: testIdentity(name), trainer: new ConstantTrainer(value, examples), backoff: fast });
    clients.push(c);
    return c;
  };

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.stop().catch(() => undefined);
    for (const c of coordinators.splice(0)) await c.stop(200);
    for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
  });

  it('clips each update exactly (norm ≤ C in integers on the grid) and leaves a short one as it is, truncated to the grid', () => {
    const C = 0.75;
    const dp = new DpStrategy(new FedAvg(), { clipNorm: C, noiseMultiplier: 1 });
    const global = bigAdapter();
    const long = global.map((t, k) => ({ ...t, data: Float32Array.from(t.data, (_, i) => Math.sin(1 + i * 0.37 + k) * 0.3) }));
    const short = global.map((t) => ({ ...t, data: Float32Array.from(t.data, (_, i) => ((i % 7) - 3) * 1e-4) }));
    const agg = dp.begin(global);
    agg.admit({ clientId: 'long', numExamples: 1000, delta: long });
    agg.add({ clientId: 'long', numExamples: 1000, delta: long });
    let sumSq = 0n;
    let normSq = 0;
    for (const t of long) for (const x of t.data) normSq += x * x;
    const c = (C * CLIP_MARGIN) / Math.sqrt(normSq);
    for (const t of global) {
      const s = agg.sum().tensors.get(t.name)!;
      const x = long.find((l) => l.name === t.name)!.data;
      for (let i = 0; i < s.length; i++) {
        expect(s[i]).to.equal(Math.trunc(c * SCALE * x[i]));
        sumSq += BigInt(s[i]) * BigInt(s[i]);
      }
    }
    const cGrid = BigInt(C * SCALE); // C·2^24 is an integer for C = 0.75
    expect(sumSq <= cGrid * cGrid, 'clipped norm ≤ C exactly').to.equal(true);
    expect(Number(sumSq) / Number(cGrid * cGrid)).to.be.greaterThan(0.9999);

    const agg2 = dp.begin(global);
    agg2.admit({ clientId: 'short', numExamples: 3, delta: short });
    agg2.add({ clientId: 'short', numExamples: 3, delta: short });
    for (const t of global) {
      const s = agg2.sum().tensors.get(t.name)!;
      const x = short.find((l) => l.name === t.name)!.data;
      for (let i = 0; i < s.length; i++) expect(s[i]).to.equal(Math.trunc(SCALE * x[i]));
    }
    // Weights are uniform whatever the example counts.
    expect(agg.weights()).to.deep.equal({ long: 1 });
  });

  it('adds N(0, (z·C)²) once per round at the coordinator: the committed adapter minus the noiseless mean has the recorded σ', async () => {
    const C = 1;
    const z = 0.8;
    const { c, address, runDir } = await start({ clipNorm: C, noiseMultiplier: z, delta: 1e-5 });
    // a: short (norm 0.0005·√20000 ≈ 0.07 < C, kept); b: long (norm ≈ 2.8 > C, clipped). Example counts differ by 30×.
    const runs = [site(address, 'a', 0.0005, 10).run(), site(address, 'b', 0.02, 300).run()];
    const final = await c.done;
    await Promise.all(runs);
    const m = final.manifest;
    expect(m.strategy).to.equal('fedavg+dp');
    expect(m.participants.map((p) => p.weight)).to.deep.equal([0.5, 0.5]);
    const eps1 = epsilonSpent([{ q: 1, z, steps: 1 }], 1e-5);
    expect(m.privacy).to.deep.include({
      mechanism: 'dp-fedavg-gaussian',
      noiseAddedBy: 'coordinator',
      clipNorm: C,
      noiseMultiplier: z,
      effectiveNoiseMultiplier: z,
      sigma: z * C,
      samplingRate: 1,
      rounds: 1,
      delta: 1e-5,
      epsilon: eps1,
    });
    // The noiseless aggregate of the same updates, computed here from the definition.
    const fa = Math.fround(0.0005);
    const fb = Math.fround(0.02);
    const cb = (C * CLIP_MARGIN) / Math.sqrt(2 * N * fb * fb);
    const expected = (Math.trunc(SCALE * fa) + Math.trunc(cb * SCALE * fb)) / (2 * SCALE);
    const diffs: number[] = [];
    for (const t of final.adapter) for (const v of t.data) diffs.push(v - expected);
    const mean = diffs.reduce((s, d) => s + d, 0) / diffs.length;
    const variance = diffs.reduce((s, d) => s + (d - mean) ** 2, 0) / (diffs.length - 1);
    const want = ((z * C) / 2) ** 2; // σ on the sum, divided by the 2 updates
    expect(diffs.length).to.equal(2 * N);
    expect(Math.abs(mean)).to.be.below((5 * (z * C)) / 2 / Math.sqrt(diffs.length));
    // Sample variance of 20 000 normals: relative standard error √(2/n) = 1%; ±5% is five of them. Noise
    // added twice would double it; noise missing would leave ~0.
    expect(variance / want).to.be.within(0.95, 1.05);
    const v0 = (await new FsCheckpointStore(runDir).read(0)).manifest;
    expect(v0.privacy).to.deep.include({ noiseAddedBy: 'none', rounds: 0, epsilon: 0 });
  });

  it('stops before the round that would exceed privacy.epsilonBudget, says so, and shows ε in checkpoints list', async () => {
    const z = 3;
    const e = (t: number): number => epsilonSpent([{ q: 1, z, steps: t }], 1e-5);
    const budget = (e(2) + e(3)) / 2;
    const lines: string[] = [];
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push(chunk.toString('utf8'));
          cb();
        },
      }),
    );
    const { c, address, runDir } = await start({ clipNorm: 0.5, noiseMultiplier: z, epsilonBudget: budget }, { total: 10 }, logger);
    const finished = new Promise<{ version: number; reason: string }>((r) => c.once('runFinished', r));
    const runs = [site(address, 'a', 0.001, 5).run(), site(address, 'b', -0.001, 5).run()];
    const final = await c.done;
    await Promise.all(runs);
    const ev = await finished;
    expect(ev.version).to.equal(2);
    expect(ev.reason).to.match(/^privacy budget: round 3 would take ε from \d+\.\d{4} to \d+\.\d{4} at δ = 0.00001, past the budget/);
    expect(final.manifest.privacy).to.deep.include({ rounds: 2, epsilon: e(2), epsilonBudget: budget });
    expect(final.manifest.privacy!.epsilon!).to.be.below(budget);
    expect(lines.some((l) => l.includes('stopping before the round that would exceed the privacy budget'))).to.equal(true);
    const table = formatVersionTable(await new FsCheckpointStore(runDir).list()).split('\n');
    expect(table[0]).to.match(/\bepsilon\b/);
    expect(table).to.have.length(4);
    expect(table[3]).to.contain(`${e(2).toFixed(3)}@0.00001`);
    // A restarted coordinator resumes the ledger from the manifest and stops at once: no round 3.
    await c.stop(200);
    coordinators.splice(coordinators.indexOf(c), 1);
    const config = classicConfig({
      overrides: {
        server: { port: 0 },
        run: { dir: runDir, seed: 3 },
        rounds: { total: 10, minClients: 2, minUpdates: 2 },
        log: { level: 'silent' },
        auth: { mode: 'tofu' },
        lora: { aggregation: 'fedit' },
        privacy: { enabled: true, clipNorm: 0.5, noiseMultiplier: z, epsilonBudget: budget },
      },
    });
    const again = new Coordinator({
      config,
      initialAdapter: bigAdapter,
      adapterConfig: { peft_type: 'LORA' },
      baseModel: { name: 't', sha256: '0'.repeat(64) },
      logger: pino({ level: 'silent' }),
    });
    coordinators.push(again);
    await again.start();
    expect((await again.done).manifest.version).to.equal(2);
  });

  it('refuses invalid privacy settings at start, naming the key', async () => {
    const bad = (privacy: Record<string, unknown>, env?: NodeJS.ProcessEnv): string => {
      try {
        classicConfig({ overrides: { privacy: { enabled: true, ...privacy } }, env });
      } catch (e) {
        expect(e).to.be.instanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(bad({}, { FEDTUNE_PRIVACY_NOISE_MULTIPLIER: 'NaN' })).to.contain('privacy.noiseMultiplier');
    expect(bad({ clipNorm: 0 })).to.contain('privacy.clipNorm');
    expect(bad({ clipNorm: 1000 })).to.contain('privacy.clipNorm (1000) must be a number in (0, 128]');
    expect(bad({ delta: 1 })).to.contain('privacy.delta');
    expect(bad({ epsilonBudget: -1 })).to.contain('privacy.epsilonBudget');
    // A configuration object built in code (no loadConfig) is checked when the coordinator starts.
    const runDir = await tempDir('dp');
    dirs.push(runDir);
    const base = classicConfig({ overrides: { server: { port: 0 }, run: { dir: runDir }, log: { level: 'silent' } } });
    const config = { ...base, privacy: { ...base.privacy, enabled: true, delta: NaN } };
    const c = new Coordinator({
      config,
      initialAdapter: bigAdapter,
      adapterConfig: { peft_type: 'LORA' },
      baseModel: { name: 't', sha256: '0'.repeat(64) },
      logger: pino({ level: 'silent' }),
    });
    let msg = '';
    await c.start().then(
      () => coordinators.push(c),
      (e: Error) => (msg = e.message),
    );
    expect(msg).to.contain('privacy.delta (NaN) must be a number in (0, 1)');
  });
});
