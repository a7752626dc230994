/// <reference types="@webgpu/types" />
// The engine at run time: owns the buffers of one (model, batch, seq, path), builds each distinct pipeline and
// every bind group once, and per step writes the step's inputs (token ids, scored pairs, a 32-byte step record)
// and records ALL kernels into one compute pass of one command buffer: one submit per step, no read-back unless
// asked (the loss is also summed on the GPU for the round). Between steps a FLoRA version can be merged into the
// frozen weights (mergeStack, merge.ts) and W0 put back into the merged modules only (restoreBase, weights.ts).
import type { Gpt2Config } from '../../proto/model/gpt2-config';
import type { LlamaConfig } from '../../proto/model/llama-config';
import { isLlamaConfig } from '../../proto/model/model-config';
import { llamaLayout, type LlamaModelLayout } from './layout-llama';
import { buildLlamaProgram } from './program-llama';
import type { EngineDevice } from './device';
import type { Kernel } from './kernel';
import { modelLayout, type ModelLayout } from './layout';
import { STEP } from './loss';
import { buildProgram, type EnginePath, type Program } from './program';
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { restoreW0, stackModules, stackW0, uploadBase } from './weights';
import { BaseMerger } from './merge';
import { shareKernels } from './dedupe';
import { DROP_KEY_BUFFER } from './dropout';
import { dropoutModuleKey } from '../model/dropout-mask';
import type { ClientOptimizer } from '../../proto/model/client-optimizer';
import { tuningFromEnv, type EngineTuning } from './tuning';
import { pairsByRow } from './step-inputs';

export interface EngineOptions {
  /** GPT-2 or a Llama-family model (program.ts or program-llama.ts builds the step). */
  readonly config: Gpt2Config | LlamaConfig;
  /** Base weights with HF names (Gpt2Model.namedWeights(), LlamaModel.namedWeights()). */
  readonly weights: readonly NamedTensor[];
  /** The adapter's layout (canonical, sorted); its values are loaded with setAdapter. */
  readonly adapter: readonly NamedTensor[];
  readonly batch: number;
  readonly seq: number;
  readonly path: EnginePath;
  readonly loraScale: number;
  readonly maxGradNorm?: number;
  /** FedProx: build the update with the proximal gradient (setAdapter keeps the anchor; StepInput.proximalMu). */
  readonly proximal?: boolean;
  /** SCAFFOLD: build the update with the control-variate correction and the gradient sum (setControl, readF32('gsum')). */
  readonly scaffold?: boolean;
  readonly adam?: { readonly beta1: number; readonly beta2: number; readonly eps: number };
  /** The update rule (absent: AdamW); SGD's momentum buffer lives in adamM, zeroed by setAdapter. */
  readonly optimizer?: ClientOptimizer;
  /** LoRA dropout p (absent or 0: none); each step then needs StepInput.dropoutStep. */
  readonly dropout?: number;
  /** Kernel choices (tuning.ts); absent: the path's defaults, with FEDTUNE_ENGINE_TUNE's keys over them. */
  readonly tuning?: EngineTuning;
}

export interface StepInput {
  /** [batch·seq] token ids, row-major. */
  readonly ids: Int32Array;
  /** Flat position b·seq + t and target token of every scored pair. */
  readonly pairPos: Int32Array;
  readonly pairTarget: Int32Array;
  readonly lr: number;
  readonly weightDecay: number;
  /** FedProx's μ (an engine built with `proximal` only; 0 or absent otherwise). */
  readonly proximalMu?: number;
  /** The step's dropout key, dropoutStepKey(plan seed, step) (model/dropout-mask.ts); needed with dropout only. */
  readonly dropoutStep?: number;
}

const BYTES = { f32: 4, f16: 2, u32: 4 } as const;

export class LoraEngine {
  readonly program: Program;
  readonly layout: ModelLayout | LlamaModelLayout;
  private readonly buffers = new Map<string, GPUBuffer>();
  private readonly passes: { kernel: Kernel; pipeline: GPUComputePipeline; bindGroup: GPUBindGroup }[] = [];
  private readonly stepWords = new Uint32Array(STEP.words);
  private readonly stepF32 = new Float32Array(this.stepWords.buffer);
  private t = 0;
  /** CPU milliseconds spent in step() (input uploads, recording, submit) since construction. */
  cpuMs = 0;
  steps = 0;
  private acc1 = 1;
  private acc2 = 1;
  /** FLoRA: the module paths whose stack `w` holds merged (undefined: W0), and the pipeline that merges them. */
  private merged?: Set<string>;
  private merger?: BaseMerger;
  /** Distinct shader modules compiled (pipelines are shared between kernels with identical WGSL). */
  readonly pipelineCount: number;
  readonly bytesAllocated: number;
  /** CPU milliseconds to create the pipelines and bind groups (driver shader compilation included). */
  readonly buildMs: number;

  constructor(
    private readonly ed: EngineDevice,
    private readonly o: EngineOptions,
  ) {
    const dev = ed.device;
    const rows = o.batch * o.seq;
    const adam = o.adam ?? { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    const cfg = o.config;
    const common = {
      batch: o.batch,
      seq: o.seq,
      path: o.path,
      loraScale: o.loraScale,
      clip: o.maxGradNorm !== undefined,
      proximal: o.proximal === true,
      scaffold: o.scaffold === true,
      adam,
      optimizer: o.optimizer,
      workgroupBytes: ed.caps.maxComputeWorkgroupStorageSize,
      ...(o.dropout ? { dropout: o.dropout } : {}),
    };
    if (isLlamaConfig(cfg)) {
      const layout = llamaLayout(cfg, o.adapter, rows);
      this.layout = layout;
      this.program = buildLlamaProgram({ ...common, config: cfg, layout, tuning: o.tuning ?? tuningFromEnv(undefined, o.path, 'llama') });
    } else {
      const layout = modelLayout(cfg, o.adapter, rows);
      this.layout = layout;
      this.program = buildProgram({ ...common, config: cfg, layout, tuning: o.tuning ?? tuningFromEnv(undefined, o.path) });
    }
    let bytes = 0;
    for (const [name, b] of this.program.buffers) {
      const size = Math.ceil((b.elems * BYTES[b.type]) / 4) * 4;
      if (size > ed.caps.maxStorageBufferBindingSize)
        throw new Error(`engine buffer ${name} needs ${size} bytes, more than the adapter binds (${ed.caps.maxStorageBufferBindingSize})`);
      this.buffers.set(name, dev.createBuffer({ label: name, size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC }));
      bytes += size;
    }
    this.bytesAllocated = bytes;
    uploadBase(o, this.layout, (name, data) => this.write(name, data));
    dev.pushErrorScope('validation');
    const t0 = performance.now();
    const { groups, groupOf } = shareKernels(this.program.kernels);
    const pipelines = groups.map((g) => {
      const k = this.program.kernels[g.members[0]];
      const module = dev.createShaderModule({ label: k.label, code: g.code });
      return dev.createComputePipeline({ label: k.label, layout: 'auto', compute: { module, entryPoint: 'main' } });
    });
    // One static uniform buffer holds every dispatch's varying constants, 256 bytes apart (binding alignment).
    const slots = this.program.kernels.map((_, i) => groups[groupOf[i]].params[groups[groupOf[i]].members.indexOf(i)]);
    const params = new Uint32Array(64 * Math.max(1, this.program.kernels.length));
    slots.forEach((v, i) => {
      if (v.length > 64) throw new Error('too many varying constants in one kernel');
      params.set(v, 64 * i);
    });
    const paramBuf = dev.createBuffer({ label: 'params', size: params.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    dev.queue.writeBuffer(paramBuf, 0, params);
    this.buffers.set('$params', paramBuf);
    this.program.kernels.forEach((k, i) => {
      const pipeline = pipelines[groupOf[i]];
      const entries: GPUBindGroupEntry[] = k.bindings.map((b, j) => ({ binding: j, resource: { buffer: this.buf(b.buffer) } }));
      if (slots[i].length > 0)
        entries.push({ binding: k.bindings.length, resource: { buffer: paramBuf, offset: 256 * i, size: 16 * Math.ceil(slots[i].length / 4) } });
      const bindGroup = dev.createBindGroup({ label: k.label, layout: pipeline.getBindGroupLayout(0), entries });
      this.passes.push({ kernel: k, pipeline, bindGroup });
    });
    this.buildMs = performance.now() - t0;
    const modules = { size: pipelines.length };
    this.pipelineCount = modules.size;
    this.buildError = dev.popErrorScope();
  }

  private readonly buildError: Promise<GPUError | null>;

  /** The first shader or pipeline validation error of construction, if any. */
  async compileErrors(): Promise<string[]> {
    const e = await this.buildError;
    return e ? [e.message] : [];
  }

  get dispatchesPerStep(): number {
    return this.passes.length;
  }

  private buf(name: string): GPUBuffer {
    const b = this.buffers.get(name);
    if (!b) throw new Error(`engine buffer ${name} missing`);
    return b;
  }

  private write(name: string, data: ArrayBufferView, offsetBytes = 0): void {
    this.ed.device.queue.writeBuffer(this.buf(name), offsetBytes, data.buffer, data.byteOffset, data.byteLength);
  }

  /**
   * FLoRA: merges the version's stack into the projection weights, W = W0 + B·A per module of `stack` (merge.ts),
   * from W0 again whatever was merged before. Queue-ordered between steps.
   */
  async mergeStack(stack: TensorList): Promise<void> {
    const mods = stackModules(this.layout, stack);
    const now = new Set(mods.map((m) => m.path));
    // A module merged before but absent now would keep the old delta: W0 back there first (queue-ordered before the
    // merge, which rewrites all of each module it merges, so a neighbouring value restoreW0 takes along is merged again).
    this.restore([...(this.merged ?? [])].filter((p) => !now.has(p)));
    const w0 = stackW0(this.o, mods);
    this.merger ??= new BaseMerger(this.ed.device, this.buf('w'), this.o.path === 'f32' ? 'f32' : 'f16');
    this.merged = now;
    await this.merger.merge(mods.map((m, i) => ({ ...m, w0: w0[i] })));
  }

  /** Whether a FLoRA stack is merged into the weights now (restoreBase puts W0 back). */
  get hasMergedStack(): boolean {
    return this.merged !== undefined;
  }

  /**
   * Writes W0 back into the modules the last merge changed, and no others: the bytes construction wrote there
   * (weights.ts restoreW0), so `w` is a fresh engine's again.
   */
  restoreBase(): void {
    this.restore(this.merged ?? []);
    this.merged = undefined;
  }

  private restore(paths: Iterable<string>): void {
    restoreW0(this.o, this.layout, paths, (data, at) => this.write('w', data, at));
  }

  /** Loads adapter values (same layout as construction) and resets the optimiser state. */
  setAdapter(flat: Float32Array): void {
    if (flat.length !== this.layout.adapterSize) throw new Error(`adapter has ${flat.length} values, engine expects ${this.layout.adapterSize}`);
    this.write('theta', flat);
    // FedProx's anchor: the adapter the round starts from.
    if (this.o.proximal) this.write('anchor', flat);
    const zeros = new Float32Array(flat.length);
    // SCAFFOLD: the round's gradient sum starts at 0 (setControl writes c − c_i).
    if (this.o.scaffold) this.write('gsum', zeros);
    this.write('adamM', zeros);
    this.write('adamV', zeros);
    this.write('loss', new Float32Array(2));
    this.t = 0;
    this.acc1 = 1;
    this.acc2 = 1;
  }

  /** SCAFFOLD: the correction c − c_i the update adds to every step's gradient (flat, the adapter's layout). */
  setControl(flat: Float32Array): void {
    if (!this.o.scaffold) throw new Error('setControl on an engine built without SCAFFOLD');
    if (flat.length !== this.layout.adapterSize) throw new Error(`control has ${flat.length} values, engine expects ${this.layout.adapterSize}`);
    this.write('control', flat);
  }

  /**
   * Overwrites theta[offset, offset + values.length) (offset in values). Queue-ordered: after the steps already
   * submitted, before the next step's (FFA-LoRA puts the frozen lora_A back this way after every step).
   */
  writeTheta(offset: number, values: Float32Array): void {
    if (offset < 0 || offset + values.length > this.layout.adapterSize)
      throw new RangeError(`theta range ${offset}+${values.length} outside ${this.layout.adapterSize}`);
    this.write('theta', values, offset * 4);
  }

  /**
   * Writes the step's inputs and submits the whole step as one command buffer. `timing` (benchmarks only, a device
   * with 'timestamp-query'): each dispatch gets its own compute pass with begin/end timestamps at query 2i, 2i + 1,
   * and its label is pushed to `labels`.
   */
  step(inp: StepInput, timing?: { readonly querySet: GPUQuerySet; readonly labels: string[] }): void {
    if (this.ed.lostReason) throw new Error(this.ed.lostReason);
    const c0 = performance.now();
    const { batch, seq, config } = this.o;
    const N = batch * seq;
    const { pairs: P, rowStart, rowPairs } = pairsByRow(inp.ids, inp.pairPos, inp.pairTarget, N, config.vocabSize);
    this.t++;
    // Bias corrections accumulated in f32, as tfjs's Adam keeps accBeta1/accBeta2 as f32 tensors.
    const adam = this.o.adam ?? { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    this.acc1 = Math.fround(this.acc1 * Math.fround(adam.beta1));
    this.acc2 = Math.fround(this.acc2 * Math.fround(adam.beta2));
    this.stepWords[STEP.pairs] = P;
    this.stepF32[STEP.invPairs] = 1 / P;
    this.stepF32[STEP.lr] = inp.lr;
    this.stepF32[STEP.decay] = inp.weightDecay > 0 ? 1 - inp.lr * inp.weightDecay : 1;
    this.stepF32[STEP.bc1] = 1 - this.acc1;
    this.stepF32[STEP.bc2] = 1 - this.acc2;
    this.stepF32[STEP.clip] = this.o.maxGradNorm ?? 0;
    const mu = inp.proximalMu ?? 0;
    if (mu !== 0 && !this.o.proximal) throw new Error('step asks for FedProx (proximalMu > 0) but the engine was built without it');
    this.stepF32[STEP.mu] = mu;
    this.write('step', this.stepWords);
    const drop = this.program.dropoutModules;
    if (drop.length > 0) {
      // One key per LoRA module: the kernels hash (row, feature) under it (model/dropout-mask.ts).
      if (inp.dropoutStep === undefined) throw new Error('the engine was built with LoRA dropout: the step needs its dropout key');
      const k = inp.dropoutStep;
      this.write(
        DROP_KEY_BUFFER,
        Uint32Array.from(drop, (m) => dropoutModuleKey(k, m.layer, m.proj)),
      );
    }
    this.write('ids', new Uint32Array(inp.ids.buffer, inp.ids.byteOffset, N));
    this.write('pairRow', new Uint32Array(inp.pairPos.buffer, inp.pairPos.byteOffset, P));
    this.write('pairTarget', new Uint32Array(inp.pairTarget.buffer, inp.pairTarget.byteOffset, P));
    this.write('rowStart', rowStart);
    this.write('rowPairs', rowPairs);
    const enc = this.ed.device.createCommandEncoder();
    const shape = { pairs: P };
    let pass = timing ? undefined : enc.beginComputePass();
    for (const p of this.passes) {
      const g = typeof p.kernel.grid === 'function' ? p.kernel.grid(shape) : p.kernel.grid;
      if (g[0] === 0 || g[1] === 0 || g[2] === 0) continue;
      if (timing) {
        const q = 2 * timing.labels.length;
        timing.labels.push(p.kernel.label);
        pass = enc.beginComputePass({ timestampWrites: { querySet: timing.querySet, beginningOfPassWriteIndex: q, endOfPassWriteIndex: q + 1 } });
      }
      if (!pass) throw new Error('no compute pass');
      pass.setPipeline(p.pipeline);
      pass.setBindGroup(0, p.bindGroup);
      pass.dispatchWorkgroups(g[0], g[1], g[2]);
      if (timing) pass.end();
    }
    if (!timing) pass?.end();
    this.ed.device.queue.submit([enc.finish()]);
    this.cpuMs += performance.now() - c0;
    this.steps++;
  }

  /**
   * Per-kernel GPU time (ms, wall clock over `reps` back-to-back dispatches in one submit, launch overhead
   * included), summed by label with the layer index removed. For benchmarks: it runs kernels out of order on the
   * current buffers, so the engine's state is garbage afterwards.
   */
  async profile(pairs: number, reps = 10): Promise<Record<string, { ms: number; count: number }>> {
    const out: Record<string, { ms: number; count: number }> = {};
    for (const p of this.passes) {
      const g = typeof p.kernel.grid === 'function' ? p.kernel.grid({ pairs }) : p.kernel.grid;
      const enc = this.ed.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(p.pipeline);
      pass.setBindGroup(0, p.bindGroup);
      for (let i = 0; i < reps; i++) pass.dispatchWorkgroups(g[0], g[1], g[2]);
      pass.end();
      await this.idle();
      const t0 = performance.now();
      this.ed.device.queue.submit([enc.finish()]);
      await this.idle();
      const ms = (performance.now() - t0) / reps;
      const key = p.kernel.label.replace(/h\d+\./, '');
      const e = out[key] ?? { ms: 0, count: 0 };
      e.ms += ms;
      e.count++;
      out[key] = e;
    }
    return out;
  }

  /** Reads a buffer's bytes (waits for all submitted work). */
  async readBytes(name: string, bytes?: number): Promise<ArrayBuffer> {
    const src = this.buf(name);
    const size = Math.ceil((bytes ?? src.size) / 4) * 4;
    const dst = this.ed.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.ed.device.createCommandEncoder();
    enc.copyBufferToBuffer(src, 0, dst, 0, size);
    this.ed.device.queue.submit([enc.finish()]);
    await dst.mapAsync(GPUMapMode.READ);
    const out = dst.getMappedRange().slice(0);
    dst.unmap();
    dst.destroy();
    if (this.ed.lostReason) throw new Error(this.ed.lostReason);
    return out;
  }

  async readF32(name: string, elems?: number): Promise<Float32Array> {
    return new Float32Array(await this.readBytes(name, elems === undefined ? undefined : elems * 4));
  }

  /** [last step's mean loss, sum of step losses since setAdapter]: the one 8-byte read-back. */
  async readLoss(): Promise<[number, number]> {
    const l = await this.readF32('loss', 2);
    return [l[0], l[1]];
  }

  /** Waits for the queue to drain: call before dropping the engine or exiting (see bench/RESULTS.md, crash). */
  async idle(): Promise<void> {
    await this.ed.device.queue.onSubmittedWorkDone();
  }

  async dispose(): Promise<void> {
    await this.idle();
    for (const b of this.buffers.values()) b.destroy();
    this.buffers.clear();
  }
}
