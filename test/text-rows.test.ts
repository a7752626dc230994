// Text rows ({"text": …}): a document modelled whole, for domain adaptation on a site's own documents. A document
// longer than the training window becomes consecutive windows (client-sdk/sft/pack.ts exampleWindows) rather than
// being cut at the window's end; every token but its first is scored exactly once, in training and in evaluation.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import '../client-sdk/model/gradients';
import { selectBackend } from '../client-sdk/model/backend';
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { HfTokenizer } from '../client-sdk/text/hf-tokenizer';
import { loadJsonlSftData } from '../client-sdk/data/sft-jsonl';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { evaluateAdapter } from '../client-sdk/sft/evaluate';
import { completionPairs, exampleWindows, fitToWindow, trainWindows } from '../client-sdk/sft/pack';
import type { SftExample } from '../client-sdk/sft/types';
import type { TrainingPlan } from '../client-sdk/trainer';
import { parseGpt2Config } from '../proto/model/gpt2-config';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import type { NamedTensor } from '../proto/tensors';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const TOK_DIR = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'llama', 'tok-bytelevel');
const CFG = parseGpt2Config({ model_type: 'gpt2', vocab_size: 64, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 4, layer_norm_epsilon: 1e-5 });
const LORA: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn', 'c_fc'] };

const doc = (n: number, seed: number): SftExample => {
  const rng = new Prng(seed);
  return { prompt: [], completion: Array.from({ length: n }, () => 1 + rng.nextInt(CFG.vocabSize - 1)), document: true };
};
/** The scored token indices of a document's windows, as indices into the document. */
const scoredIndices = (ex: SftExample, maxLen: number): number[] => {
  const out: number[] = [];
  let at = 0;
  exampleWindows(ex, maxLen).forEach((w, k) => {
    if (k > 0) at -= 1; // each later window starts on the previous one's last token
    for (const p of completionPairs(w)) out.push(at + p.pos + 1);
    at += w.tokens.length;
  });
  return out;
};
const bits = (xs: readonly NamedTensor[]): string[] => xs.map((x) => Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength).toString('hex'));

describe('text rows: documents modelled whole, in windows', function () {
  this.timeout(60_000);

  it('a document longer than the window is consecutive windows in which every token but the first is scored once', () => {
    for (const [n, maxLen] of [
      [40, 16],
      [31, 16],
      [32, 16],
      [16, 16],
      [17, 16],
      [5, 16],
      [2, 2],
      [9, 2],
    ]) {
      const ex = doc(n, n);
      const windows = exampleWindows(ex, maxLen);
      expect(
        windows.every((w) => w.tokens.length <= maxLen),
        `${n} in ${maxLen}`,
      ).to.equal(true);
      expect(scoredIndices(ex, maxLen), `${n} in ${maxLen}`).to.deep.equal(Array.from({ length: n - 1 }, (_, i) => i + 1));
      expect(windows, `${n} in ${maxLen}`).to.have.length(Math.max(1, Math.ceil((n - 1) / (maxLen - 1))));
    }
    // A prompt/completion example is one window, cut as before.
    const pair: SftExample = { prompt: [1, 2, 3], completion: [4, 5] };
    expect(exampleWindows(pair, 4)).to.deep.equal([fitToWindow(pair, 4)]);
    expect(() => exampleWindows({ prompt: [1], completion: [2, 3], document: true }, 8)).to.throw('a document has no prompt and no completion mask');
  });

  it('trains exactly as its windows written out as examples, weighted by its windows; evaluates every token once', async () => {
    await selectBackend();
    const model = Gpt2Model.fromTensors(CFG, randomGpt2Weights(CFG, 5, 0.3));
    try {
      const global = initLoraAdapter(CFG, LORA, 11);
      const d = doc(40, 1);
      const maxLen = 16;
      const written: SftExample[] = trainWindows([d], maxLen).map((w) => ({ prompt: w.tokens.slice(0, 1), completion: w.tokens.slice(1) }));
      expect(written).to.have.length(3);
      const plan: TrainingPlan = { round: 1, taskId: 't', localSteps: 2, batchSize: 3, learningRate: 0.05, weightDecay: 0, maxSeqLen: maxLen, seed: 3 };
      const asDoc = await new LoraSftTrainer({ model, lora: LORA, train: [d] }).train(global, plan);
      const asWindows = await new LoraSftTrainer({ model, lora: LORA, train: written }).train(global, plan);
      expect(bits(asDoc.adapter)).to.deep.equal(bits(asWindows.adapter));
      expect(asDoc.numExamples).to.equal(3);
      expect(asDoc.metrics.train_tokens).to.equal(2 * 39); // two steps, each over all three windows: 39 tokens
      expect(asDoc.metrics.train_examples_distinct).to.equal(3);
      const ev = await evaluateAdapter(model, null, [d], undefined, 16, maxLen);
      const evWritten = await evaluateAdapter(model, null, written, undefined, 16, maxLen);
      expect(ev.eval_tokens).to.equal(39);
      expect(ev.eval_examples).to.equal(1);
      expect(ev.eval_loss).to.be.closeTo(evWritten.eval_loss, 1e-6);
    } finally {
      model.dispose();
    }
  });

  it("a text row is the tokenizer's own encoding with its special tokens and EOS; a file may mix text, chat and prompt/completion rows", async () => {
    const tok = await HfTokenizer.fromDir(TOK_DIR);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedtune-text-rows-'));
    try {
      const f = path.join(dir, 'data.jsonl');
      const text = 'Discharge summary: the patient was admitted with chest pain. '.repeat(20);
      fs.writeFileSync(
        f,
        [
          JSON.stringify({ text }),
          JSON.stringify({ prompt: 'Q', completion: 'A' }),
          JSON.stringify({
            messages: [
              { role: 'user', content: 'hi' },
              { role: 'assistant', content: 'hello' },
            ],
          }),
        ].join('\n') + '\n',
      );
      const data = await loadJsonlSftData(f, tok, { seed: 1, validationFraction: 0 });
      expect(data.train).to.have.length(3);
      const [d] = data.train;
      expect(d.document).to.equal(true);
      expect(d.prompt).to.deep.equal([]);
      expect(d.completion).to.deep.equal([...tok.encode(text, true), tok.eosId!]);
      expect(d.completion[0]).to.equal(tok.tokenId('<|begin_of_text|>'));
      expect(data.train.slice(1).map((ex) => ex.document ?? false)).to.deep.equal([false, false]);
      // At a 64-token window the document is several windows, none of its text lost.
      expect(exampleWindows(d, 64).length).to.equal(Math.ceil((d.completion.length - 1) / 63));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
