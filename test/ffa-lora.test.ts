// FFA-LoRA (lora.aggregation 'ffa'): A frozen at its seeded init, only B trained, sent and averaged, so the
// aggregate's product is the weighted mean of the sites' products. Checked on the real FedAvg strategy against
// float64 references with a derived bound; over real gRPC (plain and SecAgg) with real FederationClients: the
// uploads hold only lora_B, A comes back bit for bit, B is exactly the fixed-point mean; and the refusals.
import { SPOOL_RECORD_MAGIC } from '../coordinator/sealed-update';
import { promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { FederationClient } from '../client-sdk/client';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { FrozenTensorChangedError, updateToSend } from '../client-sdk/lora-update';
import { uploadLayout } from '../coordinator/lora-aggregation';
import { clientIdFor } from '../coordinator/registry';
import { FedAvg } from '../coordinator/strategy/fedavg';
import type { Manifest } from '../coordinator/checkpoints/types';
import { expectedAdapter } from './secagg-expected';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { Prng } from '../proto/prng';
import { PREFIX, expectRefused, reportMetrics, siteDelta, startCoordinator, tempDir, testIdentity, uploadFrames, upload } from './harness';
import { rawSites, twoSitesInRound } from './sites-kit';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const A = `${PREFIX}.lora_A.weight`;
const B = `${PREFIX}.lora_B.weight`;
const R = 4;
const IN = 6;
const OUT = 5;
const S = 2; // alpha / r

function rand(rng: Prng, n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, () => (2 * rng.nextFloat() - 1) * scale);
}

/** One LoRA pair, A [R, IN] and B [OUT, R], sorted by name. */
function pair(a: Float32Array, b: Float32Array): NamedTensor[] {
  return [
    { name: A, dtype: 'float32', shape: [R, IN], data: a },
    { name: B, dtype: 'float32', shape: [OUT, R], data: b },
  ];
}

/** s·B·A in float64, [OUT, IN] row-major. */
function product(b: ArrayLike<number>, a: ArrayLike<number>): Float64Array {
  const p = new Float64Array(OUT * IN);
  for (let o = 0; o < OUT; o++) for (let i = 0; i < IN; i++) for (let j = 0; j < R; j++) p[o * IN + i] += S * b[o * R + j] * a[j * IN + i];
  return p;
}

const bits = (x: Float32Array): Buffer => Buffer.from(x.buffer, x.byteOffset, x.byteLength);

/** The real strategy as a round runs it: the sum over the round's upload layout, the aggregate over the whole adapter. */
function aggregate(mode: 'ffa' | 'fedit', global: NamedTensor[], sites: { adapter: NamedTensor[]; n: number }[]): NamedTensor[] {
  const strategy = new FedAvg();
  const layout = uploadLayout(global, mode);
  const agg = strategy.begin(layout);
  const updates = sites.map((s, k) => ({
    clientId: `site-${k}`,
    numExamples: s.n,
    delta: layout.map((g) => {
      const t = s.adapter.find((x) => x.name === g.name)!;
      return { ...g, data: Float32Array.from(t.data, (v, i) => v - g.data[i]) };
    }),
  }));
  for (const u of updates) agg.admit(u);
  for (const u of updates) agg.add(u);
  return strategy.aggregate(global, agg.sum());
}

describe('FFA-LoRA: exact aggregation of LoRA products', function () {
  const rng = new Prng(11);
  const a0 = rand(rng, R * IN, 1 / Math.sqrt(IN));
  const global = pair(a0, rand(rng, OUT * R, 0.01));
  const ns = [3, 5, 11];
  const W = ns.reduce((x, y) => x + y, 0);

  it("the aggregate's B·A equals Σ p_k B_k·A, the weighted mean of the sites' products, to the grid and float32 rounding of B", function () {
    const sites = ns.map((n) => ({ adapter: pair(a0, rand(rng, OUT * R, 0.05)), n }));
    const out = aggregate('ffa', global, sites);
    expect(bits(out[0].data).equals(bits(a0)), 'lora_A is the global A, bit for bit').to.equal(true);
    // B: Σ p_k B_k in float64, and the bound: half a grid step (2^-25, the per-update rounding of the exact
    // fixed-point mean) plus half an ulp of the float32 result.
    const meanB = new Float64Array(OUT * R);
    for (const s of sites) for (let i = 0; i < meanB.length; i++) meanB[i] += (s.n / W) * s.adapter[1].data[i];
    const errB = Float64Array.from(meanB, (m, i) => Math.abs(out[1].data[i] - m));
    const boundB = Float64Array.from(meanB, (m) => 2 ** -25 + Math.abs(m) * 2 ** -24 + 2 ** -40);
    errB.forEach((e, i) => expect(e, `B[${i}]`).to.be.at.most(boundB[i]));
    // Products: Σ p_k (s·B_k·A) against s·B_agg·A, each element within s·Σ_j bound_B·|A_j|.
    const want = new Float64Array(OUT * IN);
    for (const s of sites) product(s.adapter[1].data, a0).forEach((v, i) => (want[i] += (s.n / W) * v));
    const got = product(out[1].data, out[0].data);
    for (let o = 0; o < OUT; o++) {
      for (let i = 0; i < IN; i++) {
        let bound = 0;
        for (let j = 0; j < R; j++) bound += S * boundB[o * R + j] * Math.abs(a0[j * IN + i]);
        expect(Math.abs(got[o * IN + i] - want[o * IN + i]), `product[${o},${i}]`).to.be.at.most(bound * (1 + 1e-9) + 1e-15);
      }
    }
  });

  it("for contrast, FedIT (A and B averaged apart) misses the mean product once the sites' A differ", function () {
    const sites = ns.map((n) => ({ adapter: pair(rand(rng, R * IN, 0.4), rand(rng, OUT * R, 0.05)), n }));
    const out = aggregate('fedit', global, sites);
    const want = new Float64Array(OUT * IN);
    for (const s of sites) product(s.adapter[1].data, s.adapter[0].data).forEach((v, i) => (want[i] += (s.n / W) * v));
    const got = product(out[1].data, out[0].data);
    const worst = Math.max(...got.map((g, i) => Math.abs(g - want[i])));
    expect(worst).to.be.greaterThan(1e-3);
  });

  it('the site sends only lora_B, and refuses to upload when its trainer moved a frozen lora_A', function () {
    const trained = pair(
      a0.slice(),
      Float32Array.from(global[1].data, (v) => v + 0.25),
    );
    const sent = updateToSend(trained, global, 'ffa');
    expect(sent.map((t) => t.name)).to.deep.equal([B]);
    expect(Array.from(sent[0].data)).to.deep.equal(Array.from(trained[1].data, (v, i) => Math.fround(v - global[1].data[i])));
    expect(updateToSend(trained, global, 'fedit').map((t) => t.name)).to.deep.equal([A, B]);
    const moved = pair(a0.slice(), trained[1].data);
    moved[0].data[7] = Math.fround(moved[0].data[7] + 1e-6);
    expect(() => updateToSend(moved, global, 'ffa')).to.throw(FrozenTensorChangedError, /changed .*lora_A\.weight\[7\].*keeps frozen: only lora_B may train/);
  });
});

/** Adds the site's deterministic delta to every lora_B (A untouched), as an FFA trainer must. */
class BOnlyTrainer implements Trainer {
  readonly backend = 'test';
  readonly plans: TrainingPlan[] = [];
  constructor(
    private readonly name: string,
    private readonly n: number,
  ) {}
  async train(global: TensorList, plan: TrainingPlan): Promise<TrainOutcome> {
    this.plans.push(plan);
    const d = siteDelta(this.name, global);
    const adapter = global.map((t, k) =>
      t.name.includes('.lora_B.') ? { ...t, data: t.data.map((x, i) => x + d[k].data[i]) } : { ...t, data: t.data.slice() },
    );
    return { adapter, numExamples: this.n, metrics: { train_loss: 1 } };
  }
}

/** A shaped like PEFT's init (non-zero), B zero: version 0 of the gRPC rounds. */
function seededInit(): NamedTensor[] {
  const rng = new Prng(5, 1);
  return pair(rand(rng, R * IN, 1 / Math.sqrt(IN)), new Float32Array(OUT * R));
}

describe('FFA-LoRA over gRPC', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  it('a plain round: sites upload only lora_B, A is unchanged bit for bit, B is the exact fixed-point mean', async function () {
    const h = await startCoordinator(await tempDir('ffa'), { total: 2 }, { lora: { aggregation: 'ffa' } }, { initialAdapter: seededInit });
    dirs.push(h.runDir);
    const uploaded: string[][] = [];
    // The spool record of each accepted update names its tensors in the clear (meta header): what was sent.
    h.coordinator.engine.on('updateAccepted', (e) => {
      const rec = readFileSync(path.join(h.runDir, 'spool', `round-${e.round}`, `${e.clientId}.sealed`));
      const m = SPOOL_RECORD_MAGIC.length; // magic, u32 length, the JSON head
      const meta = JSON.parse(rec.subarray(m + 4, m + 4 + rec.readUInt32BE(m)).toString('utf8')) as { header: { tensors: { name: string }[] } };
      uploaded.push(meta.header.tensors.map((t) => t.name));
    });
    const sites = [new BOnlyTrainer('ffa-a', 3), new BOnlyTrainer('ffa-b', 7)];
    const clients = sites.map((trainer, k) => new FederationClient({ address: h.address, name: `ffa-${k}`, identity: testIdentity(`ffa-${k}`), trainer }));
    const runs = clients.map((c) => c.run());
    await h.coordinator.done;
    await Promise.all(runs);
    const [v0, v1, v2] = await Promise.all([0, 1, 2].map((v) => h.coordinator.store.read(v)));
    await h.coordinator.stop(500);
    expect(uploaded).to.deep.equal([[B], [B], [B], [B]]);
    expect(sites.every((s) => s.plans.every((p) => p.loraAggregation === 'ffa' && p.loraAlpha === 16))).to.equal(true);
    for (const v of [v1, v2]) expect(bits(v.adapter[0].data).equals(bits(v0.adapter[0].data)), `v${v.manifest.version} lora_A`).to.equal(true);
    // B of v1: the same strategy over the B deltas the sites trained (fixed point: bit-identical whatever the order).
    const want = aggregate('ffa', v0.adapter, [
      { adapter: trainedBy('ffa-a', v0.adapter), n: 3 },
      { adapter: trainedBy('ffa-b', v0.adapter), n: 7 },
    ]);
    expect(bits(v1.adapter[1].data).equals(bits(want[1].data))).to.equal(true);
    expect((v1.manifest.config.lora as { aggregation: string }).aggregation).to.equal('ffa');
    expect(v1.manifest.seeds.loraInit).to.be.a('number');
  });

  it('an upload that carries lora_A under ffa is refused by name, the lora_B-only upload is accepted; a reported rank above the adapter rank is refused', async function () {
    const h = await startCoordinator(await tempDir('ffa-refuse'), { total: 1 }, { lora: { aggregation: 'ffa' } }, { initialAdapter: seededInit });
    const r = await twoSitesInRound(h);
    try {
      const full = siteDelta('x', seededInit());
      await expectRefused(
        h.runDir,
        () => upload(r.c, uploadFrames({ who: r.a, task: r.taskA }, full)),
        grpc.status.INVALID_ARGUMENT,
        `tensor ${A} is frozen under lora.aggregation 'ffa'`,
      );
      const ok = await upload(r.c, uploadFrames({ who: r.a, task: r.taskA }, [full[1]]));
      expect(ok.duplicate).to.equal(false);
      // A reported training rank above the adapter's (r = 4 here) is refused; a smaller one is recorded.
      const report = (rank: number) => (): Promise<void> =>
        new Promise((res, rej) =>
          r.c.ReportMetrics(
            {
              session_token: r.a.session_token,
              task_id: r.taskA.task_id,
              round: r.taskA.round,
              num_examples: 10,
              backend: 'test',
              metrics: {},
              lora_rank: rank,
            },
            (e) => (e ? rej(e) : res()),
          ),
        );
      await expectRefused(h.runDir, report(5), grpc.status.INVALID_ARGUMENT, "lora_rank 5 exceeds the adapter's rank 4");
      await report(2)();
    } finally {
      await r.close();
    }
  });

  it('a restarted coordinator counts the lora_B-only update it spooled, and commits A unchanged', async function () {
    const runDir = await tempDir('ffa-restart');
    dirs.push(runDir);
    const cfg = [runDir, { total: 1 }, { lora: { aggregation: 'ffa' } }, { initialAdapter: seededInit }] as const;
    const h1 = await startCoordinator(...cfg);
    const first = await twoSitesInRound(h1);
    const v0 = await h1.coordinator.store.read(0);
    const dA = siteDelta('restart-a', v0.adapter)[1];
    await upload(first.c, uploadFrames({ who: first.a, task: first.taskA, numExamples: 3 }, [dA]));
    first.c.close();
    await h1.coordinator.stop(500);
    // Same run directory (keys, v0, spool): round 1 resumes with site-a's update carried.
    const h2 = await startCoordinator(...cfg);
    const s = await rawSites(h2.address, ['site-a', 'site-b']);
    const [b, taskB] = [s.joined[1], await s.tasks[1]];
    const dB = siteDelta('restart-b', v0.adapter)[1];
    await upload(s.c, uploadFrames({ who: b, task: taskB, numExamples: 7 }, [dB]));
    await reportMetrics(s.c, b.session_token, taskB.task_id, taskB.round);
    await h2.coordinator.done;
    const v1 = await h2.coordinator.store.read(1);
    s.hangUp();
    await h2.coordinator.stop(500);
    expect(v1.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['site-a', 'site-b']);
    expect(bits(v1.adapter[0].data).equals(bits(v0.adapter[0].data)), 'lora_A').to.equal(true);
    const plus = (d: NamedTensor): NamedTensor[] => [v0.adapter[0], { ...v0.adapter[1], data: Float32Array.from(d.data, (x, i) => v0.adapter[1].data[i] + x) }];
    const want = aggregate('ffa', v0.adapter, [
      { adapter: plus(dA), n: 3 },
      { adapter: plus(dB), n: 7 },
    ]);
    expect(bits(v1.adapter[1].data).equals(bits(want[1].data)), 'lora_B').to.equal(true);
  });

  it('SecAgg defaults to ffa: the masked vector covers only lora_B, A is unchanged, B is the exact decoded sum', async function () {
    const n = 5;
    const h = await startCoordinator(
      await tempDir('ffa-secagg'),
      { total: 1, minClients: n, minUpdates: n, clientsPerRound: n, deadlineMs: 30_000 },
      { secagg: { enabled: true, stageTimeoutMs: 20_000 }, lora: { aggregation: 'auto' } },
      { initialAdapter: seededInit },
    );
    dirs.push(h.runDir);
    const encoded = new Map<string, Uint32Array>();
    const names = Array.from({ length: n }, (_, i) => `sa-ffa-${i}`);
    const clients = names.map(
      (name, i) =>
        new FederationClient({
          address: h.address,
          name,
          identity: testIdentity(name),
          trainer: new BOnlyTrainer(name, 4 + i),
          observeSecAggInput: (_t, x) => encoded.set(clientIdFor(name), x.slice()),
        }),
    );
    const runs = clients.map((c) => c.run());
    await h.coordinator.done;
    await Promise.all(runs);
    const [v0, v1] = await Promise.all([0, 1].map((v) => h.coordinator.store.read(v)));
    await h.coordinator.stop(500);
    const m: Manifest = v1.manifest;
    expect((m.config.lora as { aggregation: string }).aggregation).to.equal('ffa');
    const sa = m.secureAggregation!;
    expect(sa.survivors).to.have.length(n);
    expect([...encoded.values()].every((x) => x.length === 1 + OUT * R)).to.equal(true);
    const want = expectedAdapter(
      sa,
      v0.adapter,
      sa.survivors.map((id) => encoded.get(id)!),
      [B],
    );
    expect(bits(v1.adapter[0].data).equals(bits(v0.adapter[0].data)), 'lora_A').to.equal(true);
    expect(bits(v1.adapter[1].data).equals(bits(want[1].data)), 'lora_B').to.equal(true);
  });
});

/** The adapter BOnlyTrainer(name) returns from `global`. */
function trainedBy(name: string, global: NamedTensor[]): NamedTensor[] {
  const d = siteDelta(name, global);
  return global.map((t, k) => (t.name.includes('.lora_B.') ? { ...t, data: t.data.map((x, i) => x + d[k].data[i]) } : t));
}
