// The embedded default task, shared by the demo, the two-process example, the e2e test and the benchmark:
// the pretrained demo model (examples/base-model) fine-tuned to answer "Is this e-mail spam?" on
// SpamAssassin, split non-IID across sites by the corpus's groups (client-sdk/data/spam-assassin.ts).
import * as path from 'node:path';
import { loadEmails, splitSpamAssassin, CHOICES, QUESTION, type SpamSplit } from '../data/spam-assassin';
import { seededShuffle } from '../../proto/shuffle';
import { encodeExamples } from '../data/encode';
import { ReducedGpt2Tokenizer } from '../text/tokenizer';
import type { SftExample } from '../sft/types';
import type { SftData } from '../sft/lora-trainer';

// From dist/client-sdk/demo/ up to the package root, where examples/base-model ships (package.json "files").
export const DEFAULT_MODEL_DIR = path.resolve(__dirname, '..', '..', '..', 'examples', 'base-model');

/** The demo's two pretrained bases: the same corpus, tokenizer and size class, one per model family. */
export type DemoModel = 'gpt2' | 'llama';
export const DEMO_MODELS: Readonly<Record<DemoModel, { dir: string; name: string; targetModules: readonly string[] }>> = {
  gpt2: { dir: DEFAULT_MODEL_DIR, name: 'fedtune/brown-sotu-gpt2-1.9m', targetModules: ['c_attn', 'c_proj', 'c_fc'] },
  // Every projection, as the GPT-2 demo adapts its attention and MLP alike.
  llama: {
    dir: path.resolve(__dirname, '..', '..', '..', 'examples', 'llama-base'),
    name: 'fedtune/brown-sotu-llama-1.8m',
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  },
};

export function parseDemoModel(name: string): DemoModel {
  if (name !== 'gpt2' && name !== 'llama') throw new Error(`--model must be gpt2 or llama, not '${name}'`);
  return name;
}

export interface SpamTaskOptions {
  readonly numClients: number;
  /** Seed of the data split (recorded in every manifest). */
  readonly splitSeed: number;
  readonly maxSeqLen: number;
  readonly modelDir?: string;
  /** Cap on each client's local validation set (evaluation costs a forward pass per example). */
  readonly clientEvalLimit?: number;
  /** Cap on the pooled held-out test set used for server-side evaluation (0 or undefined: all of it). */
  readonly testLimit?: number;
  /** Dirichlet concentration of the non-IID split (default 0.5). */
  readonly alpha?: number;
  /** How the corpus is divided among sites (default 'dirichlet'; 'groups': whole corpus groups per site). */
  readonly partition?: 'groups' | 'dirichlet';
  /** Tokenise only this client's slice (a site process needs only its own); others come back empty. */
  readonly only?: number;
}

export interface SpamTask {
  readonly tokenizer: ReducedGpt2Tokenizer;
  readonly split: SpamSplit;
  /** Per client: tokenised train and validation examples, and the answer choices. */
  readonly clients: SftData[];
  /** The pooled held-out test split, tokenised (no client trains on it). */
  readonly test: SftExample[];
  readonly choices: number[][];
}

export function prepareSpamTask(opts: SpamTaskOptions): SpamTask {
  const modelDir = opts.modelDir ?? DEFAULT_MODEL_DIR;
  const tokenizer = ReducedGpt2Tokenizer.load(path.join(modelDir, 'tokenizer.json'));
  const split = splitSpamAssassin(loadEmails(), { numClients: opts.numClients, seed: opts.splitSeed, alpha: opts.alpha, partition: opts.partition });
  const choices = CHOICES.map((c) => tokenizer.encode(c));
  // Long prompts lose their middle; the question at the end must survive whole.
  const keep = tokenizer.encode(QUESTION).length;
  const encode = (xs: readonly { prompt: string; completion: string }[]) => encodeExamples(tokenizer, xs, opts.maxSeqLen, keep);
  const clients = split.clients.map((c, i) =>
    opts.only !== undefined && i !== opts.only
      ? { train: [], eval: [], choices }
      : {
          train: encode(c.train),
          eval: encode(c.val.slice(0, opts.clientEvalLimit ?? c.val.length)),
          choices,
        },
  );
  // A seeded sample keeps the groups' proportions on average while bounding evaluation time.
  const testText = opts.testLimit ? seededShuffle(split.test, opts.splitSeed, 'test-sample').slice(0, opts.testLimit) : split.test;
  return { tokenizer, split, clients, test: encode(testText), choices };
}
