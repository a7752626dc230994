// The demo's Llama-architecture base (examples/llama-base, pretrained by examples/pretrain/pretrain.py --arch
// llama on the GPU machine): it loads as a Llama, computes what transformers computed from the same committed
// bytes, and a short real federation on it (coordinator, sites, gRPC) lowers the held-out loss.
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../client-sdk/model/backend';
import { loadModelDir } from '../client-sdk/model/load';
import { LlamaModel } from '../client-sdk/model/llama';
import { simulate } from '../client-sdk/demo/simulate';
import { DEMO_MODELS, parseDemoModel } from '../client-sdk/demo/spam-task';
// chai 6 is ESM-only; this loads it through require(esm) (Node ≥ 20.19).
import { CLASSIC_DEFAULTS } from './classic-defaults';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const DIR = DEMO_MODELS.llama.dir;

interface PretrainInfo {
  params: number;
  check: { ids: number[][]; loss: number };
}

describe('the Llama demo base (examples/llama-base)', function () {
  this.timeout(300_000);

  it('loads as a tied 4 × 128 Llama with GQA 4:2 and reproduces the loss transformers computed from its files', async () => {
    await selectBackend();
    const info = JSON.parse(await fs.readFile(path.join(DIR, 'pretrain.json'), 'utf8')) as PretrainInfo;
    const loaded = await loadModelDir(DIR);
    try {
      expect(loaded.model).to.be.instanceOf(LlamaModel);
      const c = (loaded.model as LlamaModel).config;
      expect([c.nLayer, c.nEmbd, c.nHead, c.nKvHead, c.vocabSize, c.tieWordEmbeddings]).to.deep.equal([4, 128, 4, 2, 8192, true]);
      const ids = info.check.ids;
      const [b, t] = [ids.length, ids[0].length];
      // Mean next-token cross-entropy over every position but the last, as transformers' labels=input_ids does.
      const loss = tf.tidy(() => {
        const lp = tf.logSoftmax(tf.slice(loaded.model.forward(tf.tensor2d(ids, [b, t], 'int32')), [0, 0, 0], [b, t - 1, -1]));
        const next = tf.oneHot(
          tf.tensor2d(
            ids.map((r) => r.slice(1)),
            [b, t - 1],
            'int32',
          ),
          c.vocabSize,
        );
        return -(tf.sum(tf.mul(lp, next)).dataSync()[0] / (b * (t - 1)));
      });
      // float32 here against float32 eager attention there, from the same float16 weights.
      expect(Math.abs(loss - info.check.loss) / info.check.loss).to.be.below(1e-5);
    } finally {
      loaded.model.dispose();
    }
  });

  it('--model takes gpt2 or llama and refuses anything else by name', () => {
    expect(parseDemoModel('llama')).to.equal('llama');
    expect(() => parseDemoModel('qwen')).to.throw("--model must be gpt2 or llama, not 'qwen'");
  });

  it('a short federation on it (2 sites, 2 rounds, real gRPC) lowers the held-out loss', async () => {
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-llama-demo-'));
    try {
      const r = await simulate({
        clients: 2,
        rounds: 2,
        runDir: path.join(tmp, 'run'),
        seed: 11,
        splitSeed: 7,
        localSteps: 4,
        batchSize: 8,
        learningRate: 0.003,
        testLimit: 32,
        // The claim is the coordinator's held-out loss; each site still evaluates its adapter, on 4 e-mails, not 50.
        clientEvalLimit: 4,
        alpha: 0.5,
        model: 'llama',
        // The classic defaults (FedAvg, 4 AdamW steps a round): the default recipe needs hundreds of rounds to learn.
        config: { file: CLASSIC_DEFAULTS },
        print: () => undefined,
      });
      expect(r.finalVersion).to.equal(2);
      const version = path.join(r.runDir, 'versions', 'v000002');
      const manifest = JSON.parse(await fs.readFile(path.join(version, 'manifest.json'), 'utf8')) as { baseModel: { name: string } };
      expect(manifest.baseModel.name).to.equal(DEMO_MODELS.llama.name);
      const peft = JSON.parse(await fs.readFile(path.join(version, 'adapter_config.json'), 'utf8')) as { target_modules: string[] };
      expect([...peft.target_modules].sort()).to.deep.equal([...DEMO_MODELS.llama.targetModules].sort());
      expect(r.after['heldout.eval_loss']).to.be.below(r.before['heldout.eval_loss']);
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  });
});
