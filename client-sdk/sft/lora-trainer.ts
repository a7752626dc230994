// Supervised fine-tuning of LoRA adapters on a frozen GPT-2: the Trainer that a federated client runs each round.
// Loss: mean cross-entropy over completion tokens only. Optimiser (plan.optimizer, local-optimizer.ts): Adam by
// default, or SGD with optional momentum (AdamW-style decoupled weight decay when plan.weightDecay > 0), on LoRA A
// and B (B only under FFA-LoRA, plan.loraAggregation 'ffa'), created fresh each round (optimiser state is not
// federated). With plan.proximalMu > 0, FedProx's proximal gradient pulls the
// adapter towards the round's global one (proximal.ts).
// Everything random (shuffling, dropout) derives from plan.seed, so a round is reproducible from the manifest.
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core alone registers no gradient functions (see model/gradients.ts).
import '../model/gradients';
import type { TensorList } from '../../proto/tensors';
import { sortByName } from '../../proto/tensors';
import type { EvaluateOptions, Trainer, TrainingPlan, TrainOutcome, TrainStep } from '../trainer';
import { selectBackend } from '../model/backend';
import { loadModelDir, type CausalLm } from '../model/load';
import type { Gpt2Model } from '../model/gpt2';
import { assertAdapterLayout, canonicalAdapter, loraScaling, parsePeftKey, peftKey, validateLoraConfig, type LoraConfig } from '../../proto/model/lora-layout';
import { Prng } from '../../proto/prng';
import { evaluateAdapter, type EvalMetrics } from './evaluate';
import { FlatAdapter } from './flat-adapter';
import { isTrainable } from '../../proto/model/lora-aggregation';
import { pairLogProbs } from './logprobs';
import { proximalMu, withProximalGradient } from './proximal';
import { createLocalOptimizer } from './local-optimizer';
import { completionPairs, packBatch, trainWindows } from './pack';
import type { SftExample } from './types';
import { taskLoraDropout } from '../lora-dropout';
import { dropoutStepKey } from '../model/dropout-mask';
import { LocalControl } from './scaffold-local';
import { floraEvaluated, floraRound, MergedBase, type FloraOutcome } from './flora-site';
import type { createFallbackEngineTrainer as CreateEngineTrainer } from '../engine/fallback';
import type { parseEnginePath as ParseEnginePath } from '../engine/device';

/** The options of a trainer on either family (the tfjs trainer and the WebGPU engine both take LoraSftTrainerOptions<CausalLm>). */
export interface LoraSftTrainerOptions<M extends CausalLm = Gpt2Model> {
  readonly model: M;
  /** Its dropout applies only to a task whose plan states none (from an older coordinator): the plan's wins. */
  readonly lora: LoraConfig;
  readonly train: readonly SftExample[];
  readonly eval?: readonly SftExample[];
  /** Candidate completions (token ids) for eval_accuracy, shared by all eval examples. */
  readonly choices?: readonly (readonly number[])[];
  /** Sequences per evaluation batch (default 16). */
  readonly evalBatchSize?: number;
  /** Window for evaluation (default: the model's n_positions). */
  readonly evalMaxSeqLen?: number;
}

// The PRNG stream of the seed for shuffling; dropout masks are counter-based hashes of the seed and the step
// (model/dropout-mask.ts), shared with the WebGPU engine.
export const STREAM_SHUFFLE = 1;

/** Epoch-wise seeded shuffling: a fresh permutation each time the data is exhausted. */
export class ExampleStream {
  private perm: number[] = [];
  private pos = 0;
  constructor(
    private readonly n: number,
    private readonly rng: Prng,
  ) {}
  next(): number {
    if (this.pos >= this.perm.length) {
      this.perm = this.rng.permutation(this.n);
      this.pos = 0;
    }
    return this.perm[this.pos++];
  }
}

function canonicalName(name: string): string {
  const k = parsePeftKey(name);
  return k ? peftKey(k.path, k.which) : name;
}

const nextTick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Reads one step's loss when the backend has it and reports it; the scalar is the report's to dispose. */
async function stepReport(loss: tf.Scalar, step: number, total: number, onStep: (s: TrainStep) => void): Promise<void> {
  try {
    onStep({ step, total, loss: (await loss.data())[0] });
  } catch {
    // Best effort: a failed read is the round's to report (it throws on its own), not the progress line's.
  } finally {
    loss.dispose();
  }
}

export class LoraSftTrainer implements Trainer {
  private readonly opts: LoraSftTrainerOptions<CausalLm>;
  /** The last 'flora' outcome's upload and the stack merged under it (evaluate() of it scores both). */
  private lastFlora: FloraOutcome | undefined;

  constructor(opts: LoraSftTrainerOptions<CausalLm>) {
    validateLoraConfig(opts.lora);
    if (opts.train.length === 0) throw new Error('LoraSftTrainer needs at least one training example');
    this.opts = opts;
  }

  /** The tfjs backend in use now (call selectBackend() before loading the model). */
  get backend(): string {
    return tf.getBackend();
  }

  /**
   * Runs plan.localSteps optimiser steps of plan.batchSize examples from `global` (not modified). numExamples is the
   * size of the local training set in windows (an example's, or each of a long document's), FedAvg's n_k (McMahan
   * et al. 2017): with equal local steps everywhere, a site's weight follows how much data it holds, not how much of
   * it one round happened to touch.
   * Metrics: train_loss (mean of step losses), train_tokens (completion tokens scored), train_seconds,
   * examples_per_second, train_examples_seen (steps·batch, counting repeats).
   * `stack` (lora.aggregation 'flora'): the version's stacked delta, merged into the base weights while the adapter
   * trained from `global` (here the site's fresh LoRA) trains on top (flora-site.ts MergedBase).
   */
  async train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal, onStep?: (s: TrainStep) => void, stack?: TensorList): Promise<TrainOutcome> {
    const { model, lora, train } = this.opts;
    // A 'flora' task brings the version's stack: merge it, and train a fresh LoRA of this trainer's rank and alpha on top.
    if (plan.loraAggregation === 'flora' && !stack) {
      const out = await floraRound((fresh) => new LoraSftTrainer({ ...this.opts, lora: fresh }), model.config, global, plan, lora, signal, onStep);
      this.lastFlora = { upload: out.adapter, stack: global };
      return out;
    }
    if (!(plan.localSteps >= 0 && Number.isInteger(plan.localSteps))) throw new Error(`bad localSteps ${plan.localSteps}`);
    if (!(plan.batchSize >= 1 && Number.isInteger(plan.batchSize))) throw new Error(`bad batchSize ${plan.batchSize}`);
    const mu = proximalMu(plan.proximalMu);
    const start = canonicalAdapter(global);
    assertAdapterLayout(start, model.config, lora);
    signal?.throwIfAborted();
    const t0 = performance.now();
    const maxLen = Math.min(plan.maxSeqLen, model.config.nPositions);
    // A document longer than the window is several windows (pack.ts exampleWindows); a batch draws windows.
    const windows = trainWindows(train, maxLen);
    const stream = new ExampleStream(windows.length, new Prng(plan.seed, STREAM_SHUFFLE));
    const dropout = taskLoraDropout(plan, lora.dropout); // the coordinator's, when the plan states it

    // The variable copies the data in, so `global` is never touched. Under FFA-LoRA lora_A stays a constant.
    const mode = plan.loraAggregation ?? 'fedit';
    const params = new FlatAdapter(start, (name) => !isTrainable(name, mode));
    const vars = [params.theta];
    // FedProx's anchor: the global adapter this round started from (a copy; theta changes).
    const anchor = mu > 0 ? tf.tidy(() => tf.keep(params.theta.clone())) : null;
    // SCAFFOLD: g + (c − c_i) each step, and the mean of the raw g (scaffold-local.ts).
    const control = plan.scaffold
      ? new LocalControl(
          start.filter((t) => isTrainable(t.name, mode)),
          plan.scaffold.correction,
        )
      : null;
    const scaling = loraScaling(lora);
    const merged = stack ? new MergedBase(model, stack) : null;
    const optimizer = createLocalOptimizer(plan.optimizer, plan.learningRate, plan.weightDecay);
    const seen = new Set<number>();
    // The loss is summed on the device and read once at the end: no GPU→CPU sync per step.
    let lossSum: tf.Scalar = tf.scalar(0);
    let lossSteps = 0;
    let tokens = 0;
    // Progress: each step's loss is read without awaiting it in the loop (no added sync on a GPU backend).
    const reports: Promise<void>[] = [];
    try {
      for (let step = 0; step < plan.localSteps; step++) {
        if (step > 0) await nextTick(); // let aborts, heartbeats and other I/O in between steps
        signal?.throwIfAborted();
        const picks: number[] = [];
        for (let i = 0; i < plan.batchSize; i++) picks.push(stream.next());
        picks.forEach((i) => seen.add(i));
        const reqs = picks.map((i) => ({ tokens: windows[i].tokens, pairs: completionPairs(windows[i]) }));
        const packed = packBatch(reqs, maxLen);
        if (packed.pairTarget.length === 0) continue; // only empty completions: nothing to learn from
        tokens += packed.pairTarget.length;
        const newSum = tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => {
            const state = { modules: params.modules(), scaling, dropout };
            const dropoutStep = dropout > 0 ? dropoutStepKey(plan.seed, step) : undefined;
            return tf.neg(tf.mean(pairLogProbs(model, packed, { lora: state, dropoutStep, ...(merged ? { merged: merged.weights } : {}) }, true))) as tf.Scalar;
          }, vars);
          // FedProx: the proximal gradient at the point the loss gradient was taken (before any decay).
          // SCAFFOLD's correction joins the loss gradient first; the raw one is what c_i⁺ averages.
          const full = vars.map((v) => {
            const g = grads[v.name] as tf.Tensor1D;
            control?.record(g);
            return { name: v.name, tensor: withProximalGradient(control ? control.corrected(g) : g, v, anchor, mu) };
          });
          optimizer.apply(vars, full);
          if (onStep) reports.push(stepReport(tf.keep(value.clone()), step + 1, plan.localSteps, onStep));
          return tf.add(lossSum, value) as tf.Scalar;
        });
        lossSum.dispose();
        lossSum = newSum;
        lossSteps++;
      }
      await Promise.all(reports);
      // data(), not dataSync(): GPU backends cannot read synchronously in Node. Names as the caller spelled
      // them (e.g. with PEFT's `.default` infix), so the outcome has the layout of `global`.
      const spelled = new Map(global.map((t) => [canonicalName(t.name), t.name]));
      const adapter = sortByName((await params.read()).map((t) => ({ ...t, name: spelled.get(t.name) ?? t.name })));
      const lossTotal = (await lossSum.data())[0];
      const seconds = (performance.now() - t0) / 1000;
      const stepsRun = plan.localSteps;
      const metrics: Record<string, number> = {
        train_tokens: tokens,
        train_seconds: seconds,
        train_examples_seen: stepsRun * plan.batchSize,
        examples_per_second: seconds > 0 ? (stepsRun * plan.batchSize) / seconds : 0,
      };
      if (lossSteps > 0) metrics.train_loss = lossTotal / lossSteps;
      metrics.train_examples_distinct = seen.size;
      const mg = control ? await control.meanGradient() : undefined;
      const meanGradient = mg && { steps: mg.steps, tensors: mg.tensors.map((t) => ({ ...t, name: spelled.get(t.name) ?? t.name })) };
      return { adapter, numExamples: windows.length, metrics, ...(meanGradient ? { meanGradient } : {}) };
    } finally {
      control?.dispose();
      merged?.dispose();
      optimizer.dispose();
      anchor?.dispose();
      params.dispose();
      lossSum.dispose();
    }
  }

  /** eval_loss / eval_accuracy of `adapter` on this client's held-out data; {} when it has none. */
  async evaluate(adapter: TensorList, opts?: EvaluateOptions): Promise<EvalMetrics> {
    // After a 'flora' task: the model trained, the stack plus this site's components; a candidate sent under 'flora'
    // (opts.stack): the stack alone. Both at their own rank and scaling 1 (flora-site.ts).
    const flora = floraEvaluated(adapter, opts?.stack === true, this.lastFlora, this.opts.model.config.nLayer);
    return flora ? evaluateHeldOut({ ...this.opts, lora: flora.lora }, flora.adapter) : evaluateHeldOut(this.opts, adapter);
  }

  /** Whether `adapter` is this trainer's last 'flora' outcome (its evaluation then scores the stack with it). */
  evaluatesAsLocal(adapter: TensorList): boolean {
    return this.lastFlora?.upload === adapter;
  }
}

/** A trainer's held-out evaluation (the tfjs trainer's and the WebGPU engine's): {} when there is no eval split. */
export function evaluateHeldOut(opts: LoraSftTrainerOptions<CausalLm>, adapter: TensorList): Promise<EvalMetrics> {
  const ev = opts.eval;
  if (!ev || ev.length === 0) return Promise.resolve({});
  return evaluateAdapter(opts.model, { tensors: adapter, lora: opts.lora }, ev, opts.choices, opts.evalBatchSize ?? 16, opts.evalMaxSeqLen);
}

/** Data a client brings to fine-tuning. */
export interface SftData {
  readonly train: readonly SftExample[];
  readonly eval?: readonly SftExample[];
  readonly choices?: readonly (readonly number[])[];
  /** Window for evaluation (default: the model's n_positions). */
  readonly evalMaxSeqLen?: number;
}

/**
 * Selects the compute backend (before any tensor exists), loads a HF model directory (GPT-2 or Llama family)
 * and builds the trainer.
 * Returns the model hash too, which the client reports so the coordinator can check the base model identity.
 * FEDTUNE_ENGINE (auto | tc | f16 | f32; unset or off: tfjs) trains on the WebGPU engine instead of tfjs
 * (client-sdk/engine): 'auto' falls back to tfjs, with the reason in `engineFallback`, when no GPU or config
 * allows it; a named path fails instead. The engine is opt-in until it has run in federated rounds on GPUs.
 */
export async function createLoraSftTrainer(
  modelDir: string,
  lora: LoraConfig,
  data: SftData,
): Promise<{ trainer: Trainer; model: CausalLm; modelHash: string; backend: string; engineFallback?: string }> {
  await selectBackend();
  const loaded = await loadModelDir(modelDir);
  return { ...(await trainerForModel(loaded.model, lora, data)), model: loaded.model, modelHash: loaded.modelHash };
}

/**
 * The trainer for a model already loaded (after selectBackend): the WebGPU engine when FEDTUNE_ENGINE asks for it
 * and it can serve the model and config, else tfjs. Also used by the quality benchmark, which loads the model once.
 */
export async function trainerForModel(
  model: CausalLm,
  lora: LoraConfig,
  data: SftData,
): Promise<{ trainer: Trainer; backend: string; engineFallback?: string }> {
  const backend = tf.getBackend();
  const env = process.env.FEDTUNE_ENGINE;
  if (env !== undefined && env !== '' && env !== 'off') {
    // Loaded lazily: the engine pulls in Dawn, which CPU-only sites never need.
    // require at call time: engine/trainer imports this module, so a static import would be a cycle.
    // The engine trainer falls back (f32 engine, then tfjs) for the rest of the run after a GPU failure.
    const { createFallbackEngineTrainer: createEngineTrainer } = require('../engine/fallback') as { createFallbackEngineTrainer: typeof CreateEngineTrainer };
    const { parseEnginePath } = require('../engine/device') as { parseEnginePath: typeof ParseEnginePath };
    const path = parseEnginePath(env);
    // The engine runs GPT-2 and the Llama family; a config it cannot serve (createEngineTrainer says which field)
    // trains on tfjs ('auto') or is refused (a named path).
    const t = await createEngineTrainer({ model, lora, ...data, path: path === 'off' ? undefined : path });
    // The engine applies LoRA dropout itself (the tfjs trainer's masks: model/dropout-mask.ts), so every task
    // trains on it; only a GPU failure moves the site on (engine/fallback.ts).
    if (!('error' in t)) return { trainer: t, backend: t.backend };
    if (path !== undefined) throw new Error(`FEDTUNE_ENGINE=${env}: ${t.error}`);
    return { trainer: new LoraSftTrainer({ model, lora, ...data }), backend, engineFallback: t.error };
  }
  return { trainer: new LoraSftTrainer({ model, lora, ...data }), backend };
}
