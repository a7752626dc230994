// The Trainer that runs local rounds on the WebGPU engine instead of tfjs: same data order (the same seeded
// example stream as LoraSftTrainer), same loss (mean cross-entropy over completion tokens), same AdamW formula.
// LoRA dropout is not implemented in the engine; createEngineTrainer refuses such configs (use the tfjs trainer).
// FFA-LoRA (plan.loraAggregation 'ffa'): lora_A is written back after every step, so it ends bit-identical.
// FedProx (plan.proximalMu > 0) adds μ·(w − w_global) to the gradient inside the update kernel (optimizer.ts), as
// the tfjs trainer does (sft/proximal.ts); an engine is built with that kernel only when a round asks for it.
// Batches are padded to one window length so one engine (one set of pipelines and buffers) serves every step;
// padding sits after every scored position, which causal attention never lets them see.
import type { TensorList } from '../../proto/tensors';
import { sortByName } from '../../proto/tensors';
import type { Trainer, TrainingPlan, TrainOutcome } from '../trainer';
import type { CausalLm } from '../model/load';
import { isLlamaConfig } from '../../proto/model/model-config';
import { llamaEngineRefusal } from './program-llama';
import { assertAdapterLayout, canonicalAdapter, loraScaling, parsePeftKey, peftKey, validateLoraConfig, type LoraConfig } from '../../proto/model/lora-layout';
import { Prng } from '../../proto/prng';
import { isTrainable } from '../../proto/model/lora-aggregation';
import type { EvalMetrics } from '../sft/evaluate';
import { evaluateHeldOut, ExampleStream, STREAM_SHUFFLE, type LoraSftTrainerOptions } from '../sft/lora-trainer';
import { proximalMu } from '../sft/proximal';
import { completionPairs, fitToWindow, packBatch } from '../sft/pack';
import { choosePath, openEngineDevice, type EngineDevice } from './device';
import { LoraEngine } from './engine';
import type { EnginePath } from './program';

export interface EngineTrainerOptions extends LoraSftTrainerOptions<CausalLm> {
  readonly device: EngineDevice;
  readonly path: EnginePath;
  /** Optional global-norm gradient clipping (off in the tfjs trainer, so off by default). */
  readonly maxGradNorm?: number;
}

/** Why the engine refuses an FFA-LoRA round with gradient clipping (its global norm would count the frozen lora_A). */
export const ENGINE_FFA_REFUSAL =
  "the WebGPU engine's gradient clip (maxGradNorm) would count lora_A, which lora.aggregation 'ffa' (FFA-LoRA) freezes: train without maxGradNorm or on tfjs";

const nextTick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class EngineSftTrainer implements Trainer {
  private engine?: { key: string; e: LoraEngine };

  constructor(private readonly opts: EngineTrainerOptions) {
    validateLoraConfig(opts.lora);
    if (opts.lora.dropout > 0) throw new Error('the WebGPU engine has no LoRA dropout; use the tfjs trainer for dropout > 0');
    if (opts.train.length === 0) throw new Error('EngineSftTrainer needs at least one training example');
  }

  /** The engine of the last round (for benchmarks: dispatches, CPU time, bytes). */
  get current(): LoraEngine | undefined {
    return this.engine?.e;
  }

  get backend(): string {
    return `engine-${this.opts.path}`;
  }

  private async engineFor(batch: number, seq: number, adapter: TensorList, proximal: boolean): Promise<LoraEngine> {
    const key = `${batch}x${seq}${proximal ? '+prox' : ''}`;
    if (this.engine?.key === key) return this.engine.e;
    if (this.engine) await this.engine.e.dispose();
    const { model, lora, device, path } = this.opts;
    const why = engineModelRefusal(model);
    if (why) throw new Error(`the WebGPU engine cannot train this model: ${why}`);
    const weights = await model.namedWeights();
    const e = new LoraEngine(device, {
      config: model.config,
      weights,
      adapter,
      batch,
      seq,
      path,
      loraScale: loraScaling(lora),
      maxGradNorm: this.opts.maxGradNorm,
      proximal,
    });
    this.engine = { key, e };
    return e;
  }

  async train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal): Promise<TrainOutcome> {
    const { model, lora, train } = this.opts;
    // FFA-LoRA: the AdamW kernel updates the whole flat adapter, so the frozen lora_A values are written back
    // after every step (queue-ordered, before the next step reads them); their Adam moments are never used.
    const frozen = plan.loraAggregation === 'ffa';
    if (frozen && this.opts.maxGradNorm !== undefined) throw new Error(ENGINE_FFA_REFUSAL);
    if (!(plan.localSteps >= 0 && Number.isInteger(plan.localSteps))) throw new Error(`bad localSteps ${plan.localSteps}`);
    if (!(plan.batchSize >= 1 && Number.isInteger(plan.batchSize))) throw new Error(`bad batchSize ${plan.batchSize}`);
    const mu = proximalMu(plan.proximalMu);
    const start = canonicalAdapter(global);
    assertAdapterLayout(start, model.config, lora);
    signal?.throwIfAborted();
    const t0 = performance.now();
    const maxLen = Math.min(plan.maxSeqLen, model.config.nPositions);
    const T = Math.min(model.config.nPositions, Math.ceil(maxLen / 8) * 8);
    const windows = train.map((ex) => fitToWindow(ex, maxLen));
    const stream = new ExampleStream(train.length, new Prng(plan.seed, STREAM_SHUFFLE));
    const engine = await this.engineFor(plan.batchSize, T, start, mu > 0);
    const flat = new Float32Array(engine.layout.adapterSize);
    let off = 0;
    for (const t of start) {
      flat.set(t.data, off);
      off += t.data.length;
    }
    engine.setAdapter(flat);
    const restore: { offset: number; data: Float32Array }[] = [];
    if (frozen) {
      let at = 0;
      for (const t of start) {
        if (!isTrainable(t.name, 'ffa')) restore.push({ offset: at, data: t.data });
        at += t.data.length;
      }
    }
    const seen = new Set<number>();
    let tokens = 0;
    let lossSteps = 0;
    const ids = new Int32Array(plan.batchSize * T);
    for (let step = 0; step < plan.localSteps; step++) {
      if (step > 0 && step % 8 === 0) await nextTick();
      signal?.throwIfAborted();
      const picks: number[] = [];
      for (let i = 0; i < plan.batchSize; i++) picks.push(stream.next());
      picks.forEach((i) => seen.add(i));
      const packed = packBatch(
        picks.map((i) => ({ tokens: windows[i].tokens, pairs: completionPairs(windows[i]) })),
        maxLen,
      );
      if (packed.pairTarget.length === 0) continue;
      tokens += packed.pairTarget.length;
      ids.fill(0);
      for (let b = 0; b < packed.batch; b++) ids.set(packed.inputIds.subarray(b * packed.seq, (b + 1) * packed.seq), b * T);
      const pairPos = new Int32Array(packed.pairRow.length);
      packed.pairRow.forEach((r, p) => {
        const flatPos = packed.rows[r];
        pairPos[p] = Math.floor(flatPos / packed.seq) * T + (flatPos % packed.seq);
      });
      engine.step({ ids, pairPos, pairTarget: packed.pairTarget, lr: plan.learningRate, weightDecay: plan.weightDecay, proximalMu: mu });
      for (const r of restore) engine.writeTheta(r.offset, r.data);
      lossSteps++;
    }
    const [, lossTotal] = await engine.readLoss();
    const theta = await engine.readF32('theta', engine.layout.adapterSize);
    const spelled = new Map(
      global.map((t) => {
        const k = parsePeftKey(t.name);
        return [k ? peftKey(k.path, k.which) : t.name, t.name];
      }),
    );
    off = 0;
    const adapter = sortByName(
      start.map((t) => {
        const data = theta.slice(off, off + t.data.length);
        off += t.data.length;
        return { name: spelled.get(t.name) ?? t.name, dtype: 'float32' as const, shape: [...t.shape], data };
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const metrics: Record<string, number> = {
      train_tokens: tokens,
      train_seconds: seconds,
      train_examples_seen: plan.localSteps * plan.batchSize,
      examples_per_second: seconds > 0 ? (plan.localSteps * plan.batchSize) / seconds : 0,
      train_examples_distinct: seen.size,
    };
    if (lossSteps > 0) metrics.train_loss = lossTotal / lossSteps;
    if (adapter.some((t) => t.data.some((x) => !Number.isFinite(x)))) throw new Error('engine produced a non-finite adapter');
    return { adapter, numExamples: train.length, metrics };
  }

  async evaluate(adapter: TensorList): Promise<EvalMetrics> {
    return evaluateHeldOut(this.opts, adapter);
  }

  async dispose(): Promise<void> {
    await this.engine?.e.dispose();
    this.engine = undefined;
  }
}

/**
 * Why the engine cannot train this model, or undefined when it can: GPT-2, and the Llama family (llama, qwen2,
 * mistral) except a sliding window shorter than the training window (the attention kernels are full-causal).
 * Every other Llama config field the tfjs model implements (rope_theta and rope_scaling, GQA, head_dim, biases,
 * tied or untied head) the engine implements too.
 */
export function engineModelRefusal(model: CausalLm): string | undefined {
  const cfg = model.config;
  if (!isLlamaConfig(cfg)) return undefined;
  const why = llamaEngineRefusal(cfg, cfg.nPositions);
  return why ? `${cfg.modelType}: ${why}` : undefined;
}

/** An engine trainer when the GPU and config allow one; otherwise the reason it cannot be used. */
export async function createEngineTrainer(
  opts: LoraSftTrainerOptions<CausalLm> & { path?: EnginePath; maxGradNorm?: number },
): Promise<EngineSftTrainer | { error: string }> {
  if (opts.lora.dropout > 0) return { error: 'LoRA dropout > 0 is not implemented in the engine' };
  const why = engineModelRefusal(opts.model);
  if (why) return { error: why };
  const dev = await openEngineDevice();
  if ('error' in dev) return dev;
  const path = choosePath(dev.caps, opts.path);
  return new EngineSftTrainer({ ...opts, device: dev, path });
}
