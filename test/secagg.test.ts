// Secure aggregation over real gRPC on loopback: N real FederationClients, the real coordinator, sealed and
// signed masked uploads. The committed adapter must be bit-identical to plain fixed-point FedAvg of the same
// deltas with the same quantisation (decodeSum(sumVectors(...)) of the vectors the sites encoded) over exactly the survivors,
// with dropouts at every stage up to N − t; one more and the attempt aborts without committing.
import { promises as fs } from 'node:fs';
import { FederationClient } from '../client-sdk/client';
import type { SecAggStage } from '../client-sdk/secagg-flow';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import type { Manifest } from '../coordinator/checkpoints/types';
import { encodeUpdate, type SecAggRoundConfig } from '../proto/secagg';
import { expectedAdapter } from './secagg-expected';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { clientIdFor } from '../coordinator/registry';
import { siteDelta, smallAdapter, snapshotBytes, startCoordinator, tempDir, testIdentity, type Harness, type HarnessOptions } from './harness';
import { Writable } from 'node:stream';
import pino from 'pino';
import { SecAggAttempt } from '../coordinator/secagg-attempt';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

class SiteTrainer implements Trainer {
  readonly backend = 'test';
  constructor(
    private readonly name: string,
    private readonly n: number,
  ) {}
  async train(global: TensorList, plan: TrainingPlan): Promise<TrainOutcome> {
    const d = siteDelta(this.name, global);
    // Like real training, the update depends on the task's seed: a retry (new seed) is a new update, which the
    // site's ledger lets into a new sum (the same update twice it refuses).
    const last = d[d.length - 1].data;
    last[last.length - 1] += 1e-3 * ((plan.seed % 997) / 997);
    return { adapter: global.map((t, k) => ({ ...t, data: t.data.map((x, i) => x + d[k].data[i]) })), numExamples: this.n, metrics: { train_loss: 1 } };
  }
}

const names = (n: number): string[] => Array.from({ length: n }, (_, i) => `sa-${String(i).padStart(2, '0')}`);
const examples = (name: string): number => 5 + (name.charCodeAt(name.length - 1) % 7);

/** The encoded vector each site masked, by `${attempt}:${clientId}` (seen at the site, before masking). */
type Encoded = Map<string, Uint32Array>;

/**
 * What plain fixed-point FedAvg with the same quantisation commits for these survivors: the sum of the vectors the
 * sites actually encoded (the rounding randomness is fresh and secret, so it is captured at the site, not recomputed).
 */
function expected(m: Manifest, base: TensorList, attempt: number, encoded: Encoded): NamedTensor[] {
  const sa = m.secureAggregation!;
  const vs = sa.survivors.map((id) => encoded.get(`${attempt}:${id}`)!);
  expect(
    vs.every((v) => v !== undefined),
    'every survivor encoded a vector',
  ).to.equal(true);
  return expectedAdapter(sa, base, vs);
}

interface Drop {
  readonly stage: SecAggStage;
  readonly count: number;
  /** 'disconnect': the site leaves; 'silent': it stays connected but never sends (the stage times out). */
  readonly how: 'disconnect' | 'silent';
  readonly attempt?: number;
}

async function federate(
  n: number,
  threshold: number,
  drop?: Drop,
  opts: HarnessOptions = {},
): Promise<{ h: Harness; manifests: Manifest[]; failures: string[]; encoded: Encoded; taskErrors: string[] }> {
  const silent = drop?.how === 'silent';
  const rounds = { total: 1, minClients: n, minUpdates: 5, clientsPerRound: n, deadlineMs: silent ? 3000 : 30_000, maxAttempts: 2 };
  const h = await startCoordinator(await tempDir('secagg'), rounds, { secagg: { enabled: true, threshold, stageTimeoutMs: silent ? 1500 : 20_000 } }, opts);
  const failures: string[] = [];
  h.coordinator.on('roundFailed', (e) => failures.push(e.reason));
  const dropped = new Set(names(n).slice(0, drop?.count ?? 0));
  const encoded: Encoded = new Map();
  const taskErrors: string[] = [];
  const clients = names(n).map((name) => {
    const c: FederationClient = new FederationClient({
      address: h.address,
      name,
      identity: testIdentity(name),
      trainer: new SiteTrainer(name, examples(name)),
      observeSecAggInput: (task, x) => encoded.set(`${task.attempt}:${clientIdFor(name)}`, x.slice()),
      beforeSecAggStage: async (stage, task) => {
        if (!drop || stage !== drop.stage || !dropped.has(name) || !task.taskId.includes(`-a${drop.attempt ?? 1}-`)) return;
        if (drop.how === 'disconnect') await c.stop();
        throw new Error(`test drops ${name} before ${stage}`);
      },
    });
    c.on('taskFailed', (e) => taskErrors.push(`${name} ${e.taskId}: ${e.error}`));
    return c;
  });
  const runs = clients.map((c) => c.run().catch(() => undefined));
  await h.coordinator.done.catch(() => undefined);
  await Promise.all(clients.map((c) => c.stop()));
  await Promise.all(runs);
  const manifests = (await h.coordinator.store.list()) as Manifest[];
  await h.coordinator.stop(500);
  return { h, manifests, failures, encoded, taskErrors };
}

async function checkBitIdentical(h: Harness, m: Manifest, attempt: number, encoded: Encoded): Promise<void> {
  const ck = await h.coordinator.store.read(m.version);
  const want = expected(m, smallAdapter(0), attempt, encoded);
  for (let k = 0; k < want.length; k++) expect(Buffer.from(ck.adapter[k].data.buffer).equals(Buffer.from(want[k].data.buffer)), want[k].name).to.equal(true);
}

describe('secure aggregation over gRPC', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  for (const n of [5, 10, 20]) {
    it(`N = ${n}: the committed adapter is bit-identical to fixed-point FedAvg of the same quantised deltas`, async () => {
      const { h, manifests, encoded } = await federate(n, Math.floor(n / 2) + 1);
      dirs.push(h.runDir);
      const m = manifests[1];
      expect(m.secureAggregation!.survivors).to.have.length(n);
      expect(m.participants.every((p) => p.numExamples === null && p.weight === null)).to.equal(true);
      await checkBitIdentical(h, m, 1, encoded);
    });
  }

  const stages: SecAggStage[] = ['advertise', 'shareKeys', 'maskedInput', 'consistency', 'unmask'];
  for (const stage of stages) {
    it(`N = 10, t = 6: ${10 - 6} sites leave before ${stage}; the sum over the survivors is still exact`, async () => {
      const { h, manifests, encoded } = await federate(10, 6, { stage, count: 4, how: 'disconnect' });
      dirs.push(h.runDir);
      const sa = manifests[1].secureAggregation!;
      // Dropped before their masked input: not in the sum. Dropped while signing or unmasking: their input counts.
      expect(sa.survivors).to.have.length(stage === 'unmask' || stage === 'consistency' ? 10 : 6);
      if (stage === 'maskedInput') expect(sa.dropped).to.have.length(4);
      await checkBitIdentical(h, manifests[1], 1, encoded);
    });
  }

  for (const stage of stages.filter((x) => x !== 'unmask')) {
    it(`N = 8, t = 5: one drop too many before ${stage} aborts the attempt, commits nothing, and the retry commits`, async () => {
      const { h, manifests, failures, encoded } = await federate(8, 5, { stage, count: 4, how: 'silent' });
      dirs.push(h.runDir);
      expect(failures).to.have.length(1);
      expect(failures[0]).to.match(/secure aggregation aborted/);
      expect(manifests.map((m) => m.version)).to.deep.equal([0, 1]);
      expect(manifests[1].attempt).to.equal(2);
      await checkBitIdentical(h, manifests[1], 2, encoded);
    });
  }

  it('N = 8, t = 5: an abort during unmasking is final for that base checkpoint: the sites that revealed shares refuse the retry', async () => {
    const { h, manifests, failures, taskErrors } = await federate(8, 5, { stage: 'unmask', count: 4, how: 'silent' });
    dirs.push(h.runDir);
    expect(failures).to.have.length(2);
    expect(failures[0]).to.match(/secure aggregation aborted: .*too few unmask responses/);
    expect(failures[1]).to.match(/secure aggregation aborted: .*4 of 8 clients advertised keys/);
    expect(manifests.map((m) => m.version)).to.deep.equal([0]);
    // The four that answered attempt 1 would let a second sum over the same checkpoint isolate an update.
    const refused = taskErrors.filter((e) => /-a2-/.test(e) && /already revealed unmask shares for a sum over base checkpoint/.test(e));
    expect(refused.map((e) => e.split(' ')[0]).sort()).to.deep.equal(names(8).slice(4));
  });

  it('persists and logs no individual delta; a masked upload is statistically independent of its update', async () => {
    const big = (): NamedTensor[] => [
      { name: 'm.lora_A.weight', dtype: 'float32', shape: [4, 512], data: new Float32Array(2048) },
      { name: 'm.lora_B.weight', dtype: 'float32', shape: [512, 4], data: new Float32Array(2048) },
    ];
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _e, cb) => (lines.push(chunk.toString()), cb()) });
    // The masked vector as the coordinator received it: its opened chunks, in order (it never holds it whole).
    const chunks = new Map<string, Buffer[]>();
    const orig = SecAggAttempt.prototype.maskedChunk;
    SecAggAttempt.prototype.maskedChunk = function (this: SecAggAttempt, id: string, plain: Uint8Array) {
      chunks.set(id, [...(chunks.get(id) ?? []), Buffer.from(plain)]);
      return orig.call(this, id, plain);
    };
    let run;
    try {
      run = await federate(5, 3, undefined, { initialAdapter: big, logger: pino({ level: 'trace' }, sink) });
    } finally {
      SecAggAttempt.prototype.maskedChunk = orig;
    }
    const masked = new Map([...chunks].map(([id, cs]) => [id, new Uint32Array(Uint8Array.from(Buffer.concat(cs)).buffer)]));
    dirs.push(run.h.runDir);
    const files = await snapshotBytes(run.h.runDir);
    const log = Buffer.from(lines.join(''));
    expect(masked.size).to.equal(5);
    const m = run.manifests[1];
    const include = big()
      .map((t) => t.name)
      .sort();
    const cfg: SecAggRoundConfig = {
      roundTag: 'x',
      baseManifestSha256: '0'.repeat(64),
      selected: m.secureAggregation!.selected,
      threshold: 3,
      graph: { kind: 'full' },
      clipNorm: m.secureAggregation!.clipNorm,
      weightCap: m.secureAggregation!.weightCap,
      maxClients: m.secureAggregation!.maxClients,
      include,
      vectorLength: 4097,
    };
    for (const name of names(5)) {
      const id = clientIdFor(name);
      const delta = siteDelta(name, big());
      const x = run.encoded.get(`1:${id}`)!;
      // The rounding is fresh randomness: re-encoding the same delta gives the same vector only by chance.
      expect(Buffer.from(encodeUpdate(delta, examples(name), cfg, new Uint8Array(32)).buffer).equals(Buffer.from(x.buffer))).to.equal(false);
      // 32-byte windows of the float delta and of its encoding: none may appear in the run dir or the log.
      for (const off of [0, 1000, 2040]) {
        const fw = Buffer.from(delta[0].data.buffer, off * 4, 32);
        const xw = Buffer.from(x.buffer, (off + 1) * 4, 32);
        for (const [file, bytes] of files) {
          expect(bytes.includes(fw), `${name}'s delta in ${file}`).to.equal(false);
          expect(bytes.includes(xw), `${name}'s encoded update in ${file}`).to.equal(false);
        }
        expect(log.includes(fw) || log.includes(fw.toString('base64').slice(0, 40)) || log.includes(xw)).to.equal(false);
      }
      // The masked vector the coordinator received: bytes uniform (chi-square, 255 dof) and uncorrelated with x.
      const y = masked.get(id)!;
      const counts = new Array<number>(256).fill(0);
      for (const b of Buffer.from(y.buffer, y.byteOffset, y.byteLength)) counts[b]++;
      const e = y.byteLength / 256;
      const chi2 = counts.reduce((s, c) => s + ((c - e) * (c - e)) / e, 0);
      expect(chi2, `chi-square of ${name}'s masked bytes`).to.be.below(350);
      const xs = Int32Array.from(x.subarray(1));
      const ys = Int32Array.from(y.subarray(1));
      expect(Math.abs(pearson(xs, ys)), `correlation of ${name}'s masked input with its update`).to.be.below(0.06);
    }
  });
});

function pearson(a: Int32Array, b: Int32Array): number {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i] / n;
    mb += b[i] / n;
  }
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}
