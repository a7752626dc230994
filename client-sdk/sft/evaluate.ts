// Held-out evaluation of a base model with (or without) a LoRA adapter:
//   eval_loss      mean cross-entropy over completion tokens (token-weighted, as in training);
//   eval_accuracy  with `choices`: each choice is scored by the summed log-probability of its tokens after the
//                  prompt, the argmax is the prediction, correct when it equals the example's completion.
// Requests are sorted by length and batched; single-token choices are read off the completion's own forward pass.
import type { TensorList } from '../../proto/tensors';
import type { CausalLm } from '../model/load';
import { type LoraConfig } from '../../proto/model/lora-layout';
import { loraStateFromAdapter } from '../model/lora';
import { pairLogProbs } from './logprobs';
import { completionPairs, exampleWindows, fitToWindow, packBatch, type ScoreRequest } from './pack';
import type { SftExample } from './types';

export interface AdapterWithConfig {
  readonly tensors: TensorList;
  readonly lora: LoraConfig;
}

/** eval_loss, eval_tokens, eval_examples, and eval_accuracy when choices were given. */
export type EvalMetrics = Record<string, number>;

/** Which score a pair contributes to: the example's completion loss, or choice j's log-probability. */
interface Tag {
  readonly example: number;
  readonly choice: number; // -1 = completion loss
}

interface TaggedRequest extends ScoreRequest {
  readonly tags: Tag[][]; // per pair, possibly several (a choice equal to the completion reuses its pairs)
}

const sameTokens = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

function buildRequests(examples: readonly SftExample[], choices: readonly (readonly number[])[] | undefined, maxLen: number): TaggedRequest[] {
  const singleToken = choices !== undefined && choices.every((c) => c.length === 1);
  const reqs: TaggedRequest[] = [];
  examples.forEach((ex, i) => {
    if (choices && ex.prompt.length === 0) throw new Error(`eval example ${i}: scoring choices needs a non-empty prompt`);
    if (ex.document) {
      // A document's loss is over all its windows (exampleWindows): every token but its first, once.
      for (const dw of exampleWindows(ex, maxLen)) {
        const dp = completionPairs(dw);
        reqs.push({ tokens: dw.tokens, pairs: dp, tags: dp.map(() => [{ example: i, choice: -1 }]) });
      }
      return;
    }
    const w = fitToWindow(ex, maxLen);
    const pairs = completionPairs(w);
    const tags: Tag[][] = pairs.map(() => [{ example: i, choice: -1 }]);
    if (choices && singleToken) {
      choices.forEach((c, j) => {
        pairs.push({ pos: w.lossStart - 1, target: c[0] });
        tags.push([{ example: i, choice: j }]);
      });
    }
    reqs.push({ tokens: w.tokens, pairs, tags });
    if (choices && !singleToken) {
      choices.forEach((c, j) => {
        if (sameTokens(c, ex.completion)) {
          tags.forEach((t) => t.push({ example: i, choice: j }));
          return;
        }
        const cw = fitToWindow({ prompt: ex.prompt, completion: c }, maxLen);
        const cp = completionPairs(cw);
        reqs.push({ tokens: cw.tokens, pairs: cp, tags: cp.map(() => [{ example: i, choice: j }]) });
      });
    }
  });
  return reqs;
}

/**
 * Evaluates `adapter` (null: the base model alone) on `examples`. `choices` are token sequences shared by all
 * examples (e.g. the tokenised class labels). Runs in batches of `batchSize` sequences, awaiting between them.
 */
export async function evaluateAdapter(
  model: CausalLm,
  adapter: AdapterWithConfig | null,
  examples: readonly SftExample[],
  choices?: readonly (readonly number[])[],
  batchSize = 16,
  maxSeqLen = model.config.nPositions,
  /** With choices: told whether each example (by index) was answered right, e.g. for a bootstrap over examples. */
  onExample?: (index: number, correct: boolean) => void,
): Promise<EvalMetrics> {
  const maxLen = Math.min(maxSeqLen, model.config.nPositions);
  const reqs = buildRequests(examples, choices && choices.length > 0 ? choices : undefined, maxLen);
  const order = reqs.map((_, i) => i).sort((a, b) => reqs[a].tokens.length - reqs[b].tokens.length);
  const nChoices = choices?.length ?? 0;
  const choiceScore = new Float64Array(examples.length * nChoices);
  let lossSum = 0;
  let lossTokens = 0;
  const lora = adapter ? loraStateFromAdapter(adapter.tensors, adapter.lora) : undefined;
  try {
    for (let s = 0; s < order.length; s += batchSize) {
      const chunk = order.slice(s, s + batchSize).map((i) => reqs[i]);
      const packed = packBatch(chunk, maxLen);
      const lp = pairLogProbs(model, packed, lora ? { lora: lora.state } : {}, false);
      const values = await lp.data();
      lp.dispose();
      let k = 0;
      for (const r of chunk) {
        for (const tags of r.tags) {
          const v = values[k++];
          for (const t of tags) {
            if (t.choice < 0) {
              lossSum -= v;
              lossTokens++;
            } else {
              choiceScore[t.example * nChoices + t.choice] += v;
            }
          }
        }
      }
    }
  } finally {
    lora?.dispose();
  }
  const metrics: EvalMetrics = {
    eval_loss: lossTokens > 0 ? lossSum / lossTokens : 0,
    eval_tokens: lossTokens,
    eval_examples: examples.length,
  };
  if (choices && nChoices > 0 && examples.length > 0) {
    let correct = 0;
    examples.forEach((ex, i) => {
      let best = 0;
      for (let j = 1; j < nChoices; j++) if (choiceScore[i * nChoices + j] > choiceScore[i * nChoices + best]) best = j;
      const right = sameTokens(choices[best], ex.completion);
      if (right) correct++;
      onExample?.(i, right);
    });
    metrics.eval_accuracy = correct / examples.length;
  }
  return metrics;
}

/** Base-model evaluation convenience (no adapter). */
export function evaluateBase(model: CausalLm, examples: readonly SftExample[], choices?: readonly (readonly number[])[], batchSize = 16): Promise<EvalMetrics> {
  return evaluateAdapter(model, null, examples, choices, batchSize);
}
