// The Trainer that runs local rounds on the WebGPU engine instead of tfjs: same data order (the same seeded
// example stream as LoraSftTrainer), same loss (mean cross-entropy over completion tokens), same AdamW formula.
// LoRA dropout (the plan's, else the trainer's own): the same counter-based masks as the tfjs trainer, keyed by the
// plan seed and the step (model/dropout-mask.ts), applied inside the LoRA kernels (engine/dropout.ts).
// FFA-LoRA (plan.loraAggregation 'ffa'): lora_A is written back after every step, so it ends bit-identical.
// FedProx (plan.proximalMu > 0) adds μ·(w − w_global) to the gradient inside the update kernel (optimizer.ts), as
// the tfjs trainer does (sft/proximal.ts); an engine is built with that kernel only when a round asks for it.
// plan.optimizer 'sgd' swaps the AdamW kernel for optimizer.ts's SGD one (sft/local-optimizer.ts's rule).
// SCAFFOLD (plan.scaffold) builds the update kernel with the control-variate lines (optimizer.ts): c − c_i added to
// every step's gradient, the gradient summed on the device; its mean is the outcome's meanGradient, as on tfjs.
// FLoRA (plan.loraAggregation 'flora'): the version's stack is merged into the engine's weights on the GPU (merge.ts)
// and a fresh LoRA trains on top, exactly as sft/flora-site.ts floraRound plans it; the next task that is no FLoRA
// round gets W0 back (the bytes construction wrote). Evaluation runs on tfjs, a stack at scaling 1 as the tfjs trainer.
// Batches are padded to one window length so one engine (one set of pipelines and buffers) serves every step;
// padding sits after every scored position, which causal attention never lets them see.
import type { TensorList } from '../../proto/tensors';
import { sortByName } from '../../proto/tensors';
import type { EvaluateOptions, Trainer, TrainingPlan, TrainOutcome, TrainStep } from '../trainer';
import type { CausalLm } from '../model/load';
import { isLlamaConfig } from '../../proto/model/model-config';
import { llamaEngineRefusal } from './program-llama';
import { assertAdapterLayout, canonicalAdapter, loraScaling, parsePeftKey, peftKey, validateLoraConfig, type LoraConfig } from '../../proto/model/lora-layout';
import { Prng } from '../../proto/prng';
import { isTrainable } from '../../proto/model/lora-aggregation';
import type { EvalMetrics } from '../sft/evaluate';
import { evaluateHeldOut, ExampleStream, STREAM_SHUFFLE, type LoraSftTrainer, type LoraSftTrainerOptions } from '../sft/lora-trainer';
import { floraEvaluated, floraRound, type FloraOutcome } from '../sft/flora-site';
import { flatCorrection, meanGradientOf } from './scaffold';
import { proximalMu } from '../sft/proximal';
import { taskLoraDropout } from '../lora-dropout';
import { dropoutStepKey } from '../model/dropout-mask';
import { completionPairs, packBatch, trainWindows } from '../sft/pack';
import { choosePath, openEngineDevice, type EngineDevice } from './device';
import { LoraEngine } from './engine';
import type { EnginePath } from './program';
import { describeFault, ENGINE_FAULT_ENV, GpuFailure, oneLine, parseEngineFault, type EngineFault, type GpuFailureKind } from './gpu-failure';
import { ADAMW, type ClientOptimizer } from '../../proto/model/client-optimizer';

export interface EngineTrainerOptions extends LoraSftTrainerOptions<CausalLm> {
  readonly device: EngineDevice;
  readonly path: EnginePath;
  /** Optional global-norm gradient clipping (off in the tfjs trainer, so off by default). */
  readonly maxGradNorm?: number;
  /** Test hook: a GPU failure to cause at a given engine step (gpu-failure.ts; FEDTUNE_ENGINE_FAULT). */
  readonly fault?: EngineFault;
}

/** Why the engine refuses an FFA-LoRA round with gradient clipping (its global norm would count the frozen lora_A). */
export const ENGINE_FFA_REFUSAL =
  "the WebGPU engine's gradient clip (maxGradNorm) would count lora_A, which lora.aggregation 'ffa' (FFA-LoRA) freezes: train without maxGradNorm or on tfjs";

const nextTick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** Steps between progress reports: each is one 8-byte loss read-back, queued behind the step and never awaited. */
export const ENGINE_PROGRESS_EVERY = 8;

/** Progress after an engine step: every ENGINE_PROGRESS_EVERY-th and the last, once the loss read-back lands. */
function engineStepReport(engine: LoraEngine, step: number, total: number, onStep: (s: TrainStep) => void): Promise<void> {
  if (step % ENGINE_PROGRESS_EVERY !== 0 && step !== total) return Promise.resolve();
  // Best effort: a read-back that fails (a lost device) is the round's to report, not the progress line's.
  return engine.readLoss().then(
    ([loss]) => onStep({ step, total, loss }),
    () => undefined,
  );
}

export class EngineSftTrainer implements Trainer {
  private engine?: { key: string; e: LoraEngine };
  /** The last 'flora' outcome and its stack: evaluate() of that upload scores the stack with it (flora-site.ts). */
  private lastFlora: FloraOutcome | undefined;
  /** Engine steps submitted over this trainer's lifetime (the clock of the test hook, EngineFault). */
  private stepsRun = 0;
  private faultFired = false;
  private fault?: EngineFault;

  constructor(private readonly opts: EngineTrainerOptions) {
    validateLoraConfig(opts.lora);
    if (opts.train.length === 0) throw new Error('EngineSftTrainer needs at least one training example');
    this.fault = opts.fault;
  }

  /** The engine of the last round (for benchmarks: dispatches, CPU time, bytes). */
  get current(): LoraEngine | undefined {
    return this.engine?.e;
  }

  get backend(): string {
    return `engine-${this.opts.path}`;
  }

  get path(): EnginePath {
    return this.opts.path;
  }

  get device(): EngineDevice {
    return this.opts.device;
  }

  private async engineFor(
    batch: number,
    seq: number,
    adapter: TensorList,
    lora: LoraConfig,
    proximal: boolean,
    optimizer: ClientOptimizer,
    scaffold = false,
    dropout = 0,
  ): Promise<LoraEngine> {
    // The update kernel is built for one optimiser (SGD's momentum is a constant of its text), the LoRA kernels for
    // one dropout p (its threshold and scale are constants of their text), the layout for one adapter's tensors and
    // one scaling (a FLoRA round's fresh LoRA may differ from the trainer's own in both).
    const layout = `${loraScaling(lora)}:${adapter.map((t) => `${t.name}[${t.shape.join(',')}]`).join(';')}`;
    const key = `${batch}x${seq}${proximal ? '+prox' : ''}${optimizer.name === 'sgd' ? `+sgd${optimizer.momentum}` : ''}${scaffold ? '+scaffold' : ''}${dropout > 0 ? `+drop${dropout}` : ''}|${layout}`;
    if (this.engine?.key === key) return this.engine.e;
    if (this.engine) await this.engine.e.dispose();
    const { model, device, path } = this.opts;
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
      scaffold,
      optimizer,
      ...(dropout > 0 ? { dropout } : {}),
    });
    this.engine = { key, e };
    return e;
  }

  /**
   * One round on the engine. A GPU failure (device lost, an error in the round's error scopes, a non-finite loss or
   * adapter) is thrown as a GpuFailure after the round's scopes are closed; nothing of the round is returned, so
   * nothing of it can reach an upload or a checkpoint. Other errors (abort, bad plan) pass through unchanged.
   */
  async train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal, onStep?: (s: TrainStep) => void): Promise<TrainOutcome> {
    if (plan.loraAggregation !== 'flora') return this.guarded(global, plan, this.opts.lora, signal, onStep);
    // A 'flora' task brings the version's stack: the fresh LoRA of this site's rank and alpha trains on it merged.
    const engineWith = (fresh: LoraConfig): Pick<LoraSftTrainer, 'train'> => ({
      train: (g, p, sig, o, stack) => this.guarded(g, p, fresh, sig, o, stack),
    });
    const out = await floraRound(engineWith, this.opts.model.config, global, plan, this.opts.lora, signal, onStep);
    this.lastFlora = { upload: out.adapter, stack: global };
    return out;
  }

  /** One round of `lora` (the trainer's own, or a FLoRA round's fresh LoRA over the merged `stack`) in the GPU error scopes. */
  private async guarded(
    global: TensorList,
    plan: TrainingPlan,
    lora: LoraConfig,
    signal?: AbortSignal,
    onStep?: (s: TrainStep) => void,
    stack?: TensorList,
  ): Promise<TrainOutcome> {
    // FFA-LoRA: the AdamW kernel updates the whole flat adapter, so the frozen lora_A values are written back
    // after every step (queue-ordered, before the next step reads them); their Adam moments are never used.
    const frozen = plan.loraAggregation === 'ffa';
    if (frozen && this.opts.maxGradNorm !== undefined) throw new Error(ENGINE_FFA_REFUSAL);
    if (!(plan.localSteps >= 0 && Number.isInteger(plan.localSteps))) throw new Error(`bad localSteps ${plan.localSteps}`);
    if (!(plan.batchSize >= 1 && Number.isInteger(plan.batchSize))) throw new Error(`bad batchSize ${plan.batchSize}`);
    const ed = this.opts.device;
    if (ed.lostReason) throw new GpuFailure('device-lost', this.backend, ed.lostReason);
    const fired = this.faultFired;
    const scopes = ['internal', 'out-of-memory', 'validation'] as const;
    for (const f of scopes) ed.device.pushErrorScope(f);
    let out: TrainOutcome | undefined;
    let thrown: unknown;
    try {
      out = await this.round(global, plan, lora, frozen, signal, onStep, stack);
    } catch (e) {
      thrown = e;
    }
    // Popped in reverse order of the pushes, whatever happened; after a loss Dawn resolves them with null.
    const errors = [...scopes].reverse().map((f) => ({ f, e: ed.device.popErrorScope() }));
    const found: { f: (typeof scopes)[number]; e: GPUError | null }[] = [];
    for (const { f, e } of errors) found.push({ f, e: await this.orLost(e, signal).catch(() => null) });
    // A map aborted by a lost device can settle before Dawn delivers device.lost: give the loss a moment to land.
    if (thrown !== undefined && ed.lost && !ed.lostReason && !signal?.aborted) await Promise.race([ed.lost, sleep(500)]);
    const injected = this.faultFired && !fired && this.fault ? ` [injected: ${ENGINE_FAULT_ENV}=${describeFault(this.fault)}]` : '';
    const fail = (kind: GpuFailureKind, detail: string): GpuFailure => new GpuFailure(kind, this.backend, oneLine(detail) + injected);
    // A lost device explains every other symptom (aborted maps, empty scopes), so it is reported first.
    if (ed.lostReason) throw fail('device-lost', ed.lostReason);
    // Out of memory first: a failed allocation is often followed by validation errors about the missing buffer.
    for (const want of ['out-of-memory', 'validation', 'internal'] as const) {
      const hit = found.find((x) => x.f === want && x.e);
      if (hit?.e) throw fail(want, hit.e.message);
    }
    if (thrown !== undefined) throw thrown instanceof Error ? thrown : new Error(String(thrown));
    if (ed.uncaptured) {
      const msg = ed.uncaptured;
      ed.uncaptured = undefined; // reported once: the f32 fallback may reuse this device
      throw fail('validation', `uncaptured: ${msg}`);
    }
    if (!out) throw new Error('engine round produced no outcome');
    const loss = out.metrics.train_loss;
    if (loss !== undefined && !Number.isFinite(loss)) throw fail('non-finite', `mean train loss ${loss}`);
    if (out.adapter.some((t) => t.data.some((x) => !Number.isFinite(x)))) throw fail('non-finite', 'the trained adapter has NaN or infinite values');
    return out;
  }

  /** `p`, unless the device is lost (then a GpuFailure) or the task is aborted first: no read-back can hang a round. */
  private orLost<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
    const { lost } = this.opts.device;
    const racers: Promise<T>[] = [p];
    // Promise.race subscribes to every racer, so a loss that comes after the race settled is not left unhandled.
    if (lost) racers.push(lost.then((why) => Promise.reject(new GpuFailure('device-lost', this.backend, why))));
    let onAbort: (() => void) | undefined;
    if (signal)
      racers.push(
        new Promise<T>((_, reject) => {
          onAbort = (): void => reject(signal.reason);
          if (signal.aborted) onAbort();
          else signal.addEventListener('abort', onAbort, { once: true });
        }),
      );
    return Promise.race(racers).finally(() => {
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    });
  }

  /** Engine steps submitted so far (the clock EngineFault.step counts on). */
  get stepsDone(): number {
    return this.stepsRun;
  }

  /** Test hook: (re)arms an EngineFault on this trainer, replacing the option's (test/gpu-fallback.ts). */
  armFault(f: EngineFault): void {
    this.fault = f;
    this.faultFired = false;
  }

  /** The test hook (EngineFault): fires once, before the engine step it names, through Dawn's real calls. */
  private injectFault(engine: LoraEngine): void {
    const f = this.fault;
    if (!f || this.faultFired || f.step !== this.stepsRun || (f.path !== undefined && f.path !== this.opts.path)) return;
    this.faultFired = true;
    const dev = this.opts.device.device;
    if (f.kind === 'lost') dev.destroy();
    // MAP_READ may only be combined with COPY_DST: a validation error, caught by the round's scope.
    else if (f.kind === 'validation') dev.createBuffer({ label: 'injected fault', size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE });
    else engine.writeTheta(0, new Float32Array([NaN]));
  }

  private async round(
    global: TensorList,
    plan: TrainingPlan,
    lora: LoraConfig,
    frozen: boolean,
    signal?: AbortSignal,
    onStep?: (s: TrainStep) => void,
    stack?: TensorList,
  ): Promise<TrainOutcome> {
    const { model, train } = this.opts;
    const mu = proximalMu(plan.proximalMu);
    const start = canonicalAdapter(global);
    assertAdapterLayout(start, model.config, lora);
    signal?.throwIfAborted();
    const t0 = performance.now();
    const maxLen = Math.min(plan.maxSeqLen, model.config.nPositions);
    const T = Math.min(model.config.nPositions, Math.ceil(maxLen / 8) * 8);
    // A document longer than the window is several windows (pack.ts exampleWindows); a batch draws windows.
    const windows = trainWindows(train, maxLen);
    const stream = new ExampleStream(windows.length, new Prng(plan.seed, STREAM_SHUFFLE));
    const dropout = taskLoraDropout(plan, lora.dropout); // the coordinator's, when the plan states it
    const engine = await this.engineFor(plan.batchSize, T, start, lora, mu > 0, plan.optimizer ?? ADAMW, plan.scaffold !== undefined, dropout);
    const compile = await this.orLost(engine.compileErrors(), signal);
    if (compile.length > 0) throw new GpuFailure('validation', this.backend, `engine pipelines: ${compile[0]}`);
    // FLoRA: this task's stack merged into the weights; any other task trains on W0.
    if (stack) await this.orLost(engine.mergeStack(stack), signal);
    else if (engine.hasMergedStack) engine.restoreBase();
    const flat = new Float32Array(engine.layout.adapterSize);
    let off = 0;
    for (const t of start) {
      flat.set(t.data, off);
      off += t.data.length;
    }
    engine.setAdapter(flat);
    if (plan.scaffold) engine.setControl(flatCorrection(start, plan.scaffold.correction));
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
    const reports: Promise<void>[] = [];
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
      this.injectFault(engine);
      const drop = dropout > 0 ? { dropoutStep: dropoutStepKey(plan.seed, step) } : {};
      engine.step({ ids, pairPos, pairTarget: packed.pairTarget, lr: plan.learningRate, weightDecay: plan.weightDecay, proximalMu: mu, ...drop });
      for (const r of restore) engine.writeTheta(r.offset, r.data);
      this.stepsRun++;
      lossSteps++;
      if (onStep) reports.push(engineStepReport(engine, step + 1, plan.localSteps, onStep));
    }
    await this.orLost(Promise.all(reports), signal);
    const [, lossTotal] = await this.orLost(engine.readLoss(), signal);
    const theta = await this.orLost(engine.readF32('theta', engine.layout.adapterSize), signal);
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
    const sum = plan.scaffold ? await this.orLost(engine.readF32('gsum', engine.layout.adapterSize), signal) : undefined;
    const meanGradient = sum && meanGradientOf(sum, start, spelled, plan, lossSteps);
    return { adapter, numExamples: windows.length, metrics, ...(meanGradient ? { meanGradient } : {}) };
  }

  async evaluate(adapter: TensorList, opts?: EvaluateOptions): Promise<EvalMetrics> {
    const flora = floraEvaluated(adapter, opts?.stack === true, this.lastFlora, this.opts.model.config.nLayer);
    return flora ? evaluateHeldOut({ ...this.opts, lora: flora.lora }, flora.adapter) : evaluateHeldOut(this.opts, adapter);
  }

  async dispose(): Promise<void> {
    await this.engine?.e.dispose();
    this.engine = undefined;
  }
}

/**
 * Why the engine cannot train this model, or undefined when it can: GPT-2, and the Llama family (llama, qwen2,
 * mistral, qwen3, gemma3_text) except a sliding window shorter than the training window (the attention kernels are
 * full-causal). Every other Llama config field the tfjs model implements (rope_theta and rope_scaling, GQA, head_dim,
 * biases, tied or untied head, Qwen3's q/k norms, Gemma 3's layer) the engine implements too.
 */
export function engineModelRefusal(model: CausalLm): string | undefined {
  const cfg = model.config;
  if (!isLlamaConfig(cfg)) return undefined;
  const why = llamaEngineRefusal(cfg, cfg.nPositions);
  return why ? `${cfg.modelType}: ${why}` : undefined;
}

/** An engine trainer when the GPU and config allow one; otherwise the reason it cannot be used. */
export async function createEngineTrainer(
  opts: LoraSftTrainerOptions<CausalLm> & { path?: EnginePath; maxGradNorm?: number; device?: EngineDevice },
): Promise<EngineSftTrainer | { error: string }> {
  const why = engineModelRefusal(opts.model);
  if (why) return { error: why };
  const dev = opts.device && !opts.device.lostReason ? opts.device : await openEngineDevice();
  if ('error' in dev) return dev;
  const path = choosePath(dev.caps, opts.path);
  const fault = parseEngineFault(process.env[ENGINE_FAULT_ENV]);
  return new EngineSftTrainer({ ...opts, device: dev, path, ...(fault ? { fault } : {}) });
}
