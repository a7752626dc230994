// LoRA dropout is the coordinator's setting, carried in the task plan: over real gRPC the coordinator's
// lora.dropout reaches a real site's trainer and is recorded in the version's manifest; the tfjs trainer applies
// it with masks hashed from the task's seed and step (same seed → the same adapter bytes; the plan's value wins
// over the trainer's own); a site refuses a dropout outside [0, 1) by name (sent by a hostile coordinator, since the
// coordinator's own configuration refuses it); a site that states another --lora.dropout stops, naming both. The
// WebGPU engine draws the same masks (test/engine-dropout.test.ts, test/gpu-engine-dropout.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCoordinator, tempDir, testIdentity, type Harness } from './harness';
import { startHostileCoordinator, type HostileCoordinator } from './hostile-coordinator';
import { makeTinyLlamaDir } from './tiny-llama-dir';
import { FederationClient } from '../client-sdk/client';
import { selectBackend } from '../client-sdk/model/backend';
import { loadModelDir, type LoadedModel } from '../client-sdk/model/load';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { TaskLoraTrainer, loraConfigFromTask, LoraMismatchError } from '../client-sdk/sft/task-lora';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import type { SftExample } from '../client-sdk/sft/types';
import type { TensorList } from '../proto/tensors';
import { readSafetensors } from '../proto/safetensors';
import { initLoraAdapter } from '../proto/model/lora-layout';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const LORA = { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'] };
const examples = (n: number): SftExample[] => Array.from({ length: n }, (_, i) => ({ prompt: [1, 10 + i, 20 + (i % 7)], completion: [30 + (i % 5), 2] }));
const bytes = (out: TrainOutcome): Buffer => Buffer.concat(out.adapter.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)));

/** A real trainer, with every plan it was given kept for the test to read. */
class Recording implements Trainer {
  readonly plans: TrainingPlan[] = [];
  readonly outcomes: TrainOutcome[] = [];
  constructor(private readonly inner: Trainer) {}
  get backend(): string {
    return this.inner.backend;
  }
  async train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal): Promise<TrainOutcome> {
    this.plans.push(plan);
    const out = await this.inner.train(global, plan, signal);
    this.outcomes.push(out);
    return out;
  }
}

describe('LoRA dropout from the coordinator (task plan)', function () {
  this.timeout(180_000);
  let tmp: string;
  let loaded: LoadedModel;
  let h: Harness | undefined;
  let hostile: HostileCoordinator | undefined;
  let client: FederationClient | undefined;

  before(async function () {
    tmp = await tempDir('lora-dropout');
    makeTinyLlamaDir(path.join(tmp, 'model'));
    await selectBackend();
    loaded = await loadModelDir(path.join(tmp, 'model'));
  });

  afterEach(async function () {
    await client?.stop();
    await hostile?.stop();
    await h?.coordinator.stop();
    client = hostile = h = undefined;
  });

  after(async function () {
    loaded.model.dispose();
    await fs.promises.rm(tmp, { recursive: true, force: true });
  });

  const coordinator = (runDir: string, dropout: number, fromModelDir = true): Promise<Harness> =>
    startCoordinator(
      path.join(tmp, runDir),
      { total: 1, minClients: 1, minUpdates: 1, deadlineMs: 60_000 },
      fromModelDir
        ? { model: { dir: path.join(tmp, 'model'), name: 'tiny' }, lora: { ...LORA, dropout }, training: { localSteps: 3, batchSize: 2, maxSeqLen: 32 } }
        : { lora: { dropout } },
      { fromModelDir },
    );

  it("the coordinator's lora.dropout reaches the site's trainer, is applied from the task's seed, and is in the manifest", async function () {
    h = await coordinator('run', 0.2);
    const site = new Recording(new TaskLoraTrainer({ model: loaded.model, data: { train: examples(8) }, lora: {}, backend: 'cpu' }));
    client = new FederationClient({ address: h.address, name: 'site-a', trainer: site, identity: testIdentity('site-a'), baseModelSha256: loaded.modelHash });
    const summary = await client.run();
    expect(summary).to.include({ finalVersion: 1, tasksCompleted: 1 });
    expect(site.plans.map((p) => p.loraDropout)).to.deep.equal([0.2]);
    const final = await h.coordinator.done;
    expect(final.manifest.clientTraining).to.include({ loraDropout: 0.2 });
    expect((final.manifest.config.lora as Record<string, unknown>).dropout).to.equal(0.2);
    // The site trained with p = 0.2: a tfjs trainer whose own setting is 0 reproduces its bytes from the plan,
    // and the same plan with dropout 0 does not.
    const [plan] = site.plans;
    const global = readSafetensors(fs.readFileSync(path.join(h.runDir, 'versions', 'v000000', 'adapter_model.safetensors'))).tensors;
    const replay = new LoraSftTrainer({ model: loaded.model, lora: { ...LORA, dropout: 0 }, train: examples(8) });
    expect(bytes(await replay.train(global, plan)).equals(bytes(site.outcomes[0]))).to.equal(true);
    expect(bytes(await replay.train(global, { ...plan, loraDropout: 0 })).equals(bytes(site.outcomes[0]))).to.equal(false);
  });

  it("the tfjs trainer: same seed → the same adapter bytes; the plan's dropout wins over the trainer's own", async function () {
    const global = initLoraAdapter(loaded.config, { ...LORA, dropout: 0 }, 3);
    // A non-zero B, so dropout on the LoRA input changes the loss from the first step.
    const start = global.map((t) => (t.name.includes('lora_B') ? { ...t, data: t.data.map((_, i) => ((i % 7) - 3) / 50) } : t));
    const plan: TrainingPlan = { round: 1, taskId: 't', localSteps: 3, batchSize: 2, learningRate: 0.01, weightDecay: 0, maxSeqLen: 32, seed: 11 };
    const own = new LoraSftTrainer({ model: loaded.model, lora: { ...LORA, dropout: 0.3 }, train: examples(8) });
    const off = new LoraSftTrainer({ model: loaded.model, lora: { ...LORA, dropout: 0 }, train: examples(8) });
    const a = bytes(await off.train(start, { ...plan, loraDropout: 0.3 }));
    expect(bytes(await off.train(start, { ...plan, loraDropout: 0.3 })).equals(a), 'same seed, same bytes').to.equal(true);
    expect(bytes(await own.train(start, plan)).equals(a), "the trainer's own 0.3 when the plan states none").to.equal(true);
    expect(bytes(await own.train(start, { ...plan, loraDropout: 0 })).equals(bytes(await off.train(start, plan))), 'plan 0 wins over own 0.3').to.equal(true);
    expect(bytes(await off.train(start, { ...plan, loraDropout: 0.3, seed: 12 })).equals(a), 'another seed, other masks').to.equal(false);
  });

  for (const bad of [1.5, -0.1]) {
    it(`a site refuses lora_dropout ${bad} from a (hostile) coordinator by name, before training`, async function () {
      h = await coordinator(`run-bad-${bad}`, 0, false);
      hostile = await startHostileCoordinator(h.address, (_site, ev) =>
        ev.train ? { ...ev, train: { ...ev.train, config: { ...ev.train.config!, lora_dropout: bad } } } : ev,
      );
      const site = new Recording(new LoraSftTrainer({ model: loaded.model, lora: { ...LORA, dropout: 0 }, train: examples(4) }));
      client = new FederationClient({ address: hostile.address, name: 'site-a', trainer: site, identity: testIdentity('site-a') });
      const failed = new Promise<string>((resolve) => client!.on('taskFailed', (f) => resolve(f.error)));
      void client.run().catch(() => undefined);
      expect(await failed).to.equal(`the coordinator asks for lora_dropout ${bad}: LoRA dropout must be in [0, 1)`);
      expect(site.plans).to.deep.equal([]);
    });
  }

  it('a site that states another --lora.dropout than the task plan stops, naming both values', () => {
    const adapter = initLoraAdapter(loaded.config, { ...LORA, dropout: 0 }, 3);
    expect(() => loraConfigFromTask(adapter, 2, { dropout: 0.05 }, undefined, 0.2))
      .to.throw(LoraMismatchError)
      .with.property('message', "the coordinator's task plan has lora_dropout 0.2; this site says --lora.dropout 0.05");
    expect(loraConfigFromTask(adapter, 2, { dropout: 0.2 }, undefined, 0.2).dropout).to.equal(0.2);
    expect(loraConfigFromTask(adapter, 2, {}, undefined, 0.2).dropout).to.equal(0.2);
    expect(loraConfigFromTask(adapter, 2, { dropout: 0.1 }).dropout, 'an older coordinator: the site decides').to.equal(0.1);
  });
});
