// The whole LoRA training step as an ordered list of kernels: forward through every block (saving what backward
// reads), the LM head and cross-entropy on the scored pairs only, backward through the frozen base into the
// adapter gradients (never forming a weight gradient), optional global-norm clipping, AdamW. Built once per
// (model, batch, seq, path); engine.ts turns it into pipelines and bind groups once and records it each step.
import type { Gpt2Config } from '../../proto/model/gpt2-config';
import { attentionForward } from './attention';
import { attentionBackward } from './attention-backward';
import { attentionForwardTiled } from './attention-tiled';
import { attentionBackwardVec, attnVecOk } from './attention-backward-vec';
import { ceilDiv, type Kernel } from './kernel';
import type { LayerLayout, ModelLayout } from './layout';
import type { Operand } from './matmul';
import { NORM_CHUNK } from './optimizer';
import { lmHead, stepBuilder, updateKernels } from './program-kit';
import { DROP_KEY_BUFFER } from './dropout';
import type { ClientOptimizer } from '../../proto/model/client-optimizer';
import { embedding, gatherPairs, layerNormBackward, layerNormForward, scatterPairs } from './rowwise';
import { NO_TUNING, type EngineTuning } from './tuning';

/** f32: everything f32, register-tiled. f16: f16 weights/activations, register-tiled. tc: f16 on subgroup matrices. */
export type EnginePath = 'f32' | 'f16' | 'tc';

export interface ProgramOptions {
  readonly config: Gpt2Config;
  readonly layout: ModelLayout;
  readonly batch: number;
  readonly seq: number;
  readonly path: EnginePath;
  readonly loraScale: number;
  /** Clip the adapter gradient to this global L2 norm (none when undefined). */
  readonly clip?: boolean;
  /** FedProx: the update adds μ·(theta − anchor) to the gradient (an 'anchor' buffer holds the global adapter). */
  readonly proximal?: boolean;
  /** SCAFFOLD: the update adds 'control' (c − c_i) to the gradient and sums the gradient into 'gsum'. */
  readonly scaffold?: boolean;
  readonly adam: { readonly beta1: number; readonly beta2: number; readonly eps: number };
  /** The update rule (absent or 'adamw': the AdamW kernel, as before the choice existed; 'sgd': optimizer.ts's sgd). */
  readonly optimizer?: ClientOptimizer;
  /** The device's maxComputeWorkgroupStorageSize (picks the attention backward's tile; default WebGPU's 16 KiB). */
  readonly workgroupBytes?: number;
  /** LoRA dropout p on every LoRA module's input (dropout.ts); absent or 0: none, and the program is as without it. */
  readonly dropout?: number;
  /** Kernel choices that do not change what is computed (tuning.ts); absent: none (the engine passes the path's defaults). */
  readonly tuning?: EngineTuning;
}

export interface Program {
  readonly kernels: readonly Kernel[];
  /** Elements of each buffer, and its element type (bytes = elements · size, rounded up to 4). */
  readonly buffers: ReadonlyMap<string, { readonly elems: number; readonly type: 'f32' | 'f16' | 'u32' }>;
  readonly rows: number;
  readonly maxPairs: number;
  /** [offset, length] of every adapter-gradient region the step writes (each element exactly once). */
  readonly gradWrites: readonly (readonly [number, number])[];
  /** The LoRA modules whose input is dropped out, in the order of their keys in 'dropKey' (empty without dropout). */
  readonly dropoutModules: readonly { readonly layer: number; readonly proj: string }[];
}

export function buildProgram(o: ProgramOptions): Program {
  const cfg = o.config;
  const { batch: B, seq: T, layout } = o;
  const D = cfg.nEmbd;
  const F = cfg.nInner;
  const V = cfg.vocabSize;
  const H = cfg.nHead;
  const L = cfg.nLayer;
  const N = B * T;
  const VP = Math.ceil(V / 8) * 8; // logits row stride: 16-byte aligned rows for subgroup-matrix loads
  const P = N; // a position scores at most one next token per pair; packBatch never exceeds B·T pairs
  const r = layout.r;
  const act: 'f32' | 'f16' = o.path === 'f32' ? 'f32' : 'f16';
  const wt: 'f32' | 'f16' = act;
  if (T > cfg.nPositions) throw new Error(`seq ${T} exceeds n_positions ${cfg.nPositions}`);
  if (N * D > 65535 * 256) throw new Error(`batch·seq ${N} too large for one step`);
  const b = stepBuilder({
    path: o.path,
    loraScale: o.loraScale,
    rows: N,
    r,
    tuning: o.tuning ?? NO_TUNING,
    ...(o.dropout ? { dropout: { p: o.dropout, seq: T } } : {}),
  });
  const { kernels, gradWrites, opnd, linearFwd, linearBwd } = b;
  const tune = o.tuning ?? NO_TUNING;
  const vec = !!tune.attnVec && attnVecOk(D / H);

  // ---------- forward ----------
  kernels.push(embedding(N, T, D));
  const xOff = (i: number): number => i * N * D;
  const lnOut = (name: 'lnA' | 'lnM', l: number): number => l * N * D;

  for (let l = 0; l < L; l++) {
    const Ly: LayerLayout = layout.layers[l];
    let scale = cfg.scaleAttnWeights ? 1 / Math.sqrt(D / H) : 1;
    if (cfg.scaleAttnByInverseLayerIdx) scale /= l + 1;
    kernels.push(
      layerNormForward(N, D, cfg.layerNormEpsilon, act, {
        x: xOff(2 * l),
        gamma: Ly.ln1.gamma,
        beta: Ly.ln1.beta,
        y: 'lnA',
        yOff: lnOut('lnA', l),
        stats: 2 * l * N * 2,
      }),
    );
    linearFwd(Ly.proj['attn.c_attn'], opnd('lnA', lnOut('lnA', l), act), { out: { buffer: 'qkv', offset: l * N * 3 * D, ld: 3 * D, mode: 'store' } });
    const attnIo = { qkv: l * N * 3 * D, ctx: l * N * D, lse: l * B * H * T };
    kernels.push(
      tune.attnTiled ? attentionForwardTiled({ B, T, H, D, scale, act }, attnIo, o.workgroupBytes, vec) : attentionForward({ B, T, H, D, scale, act }, attnIo),
    );
    linearFwd(Ly.proj['attn.c_proj'], opnd('ctx', l * N * D, act), {
      residual: { buffer: 'xres', offset: xOff(2 * l) },
      out: { buffer: 'xres', offset: xOff(2 * l + 1), ld: D, mode: 'store' },
    });
    kernels.push(
      layerNormForward(N, D, cfg.layerNormEpsilon, act, {
        x: xOff(2 * l + 1),
        gamma: Ly.ln2.gamma,
        beta: Ly.ln2.beta,
        y: 'lnM',
        yOff: lnOut('lnM', l),
        stats: (2 * l + 1) * N * 2,
      }),
    );
    linearFwd(Ly.proj['mlp.c_fc'], opnd('lnM', lnOut('lnM', l), act), {
      gelu: { buffer: 'hpre', offset: l * N * F },
      out: { buffer: 'gact', offset: l * N * F, ld: F, mode: 'store', type: act },
    });
    linearFwd(Ly.proj['mlp.c_proj'], opnd('gact', l * N * F, act), {
      residual: { buffer: 'xres', offset: xOff(2 * l + 1) },
      out: { buffer: 'xres', offset: xOff(2 * l + 2), ld: D, mode: 'store' },
    });
  }
  kernels.push(
    layerNormForward(N, D, cfg.layerNormEpsilon, act, {
      x: xOff(2 * L),
      gamma: layout.lnf.gamma,
      beta: layout.lnf.beta,
      y: 'hf',
      yOff: 0,
      stats: 2 * L * N * 2,
    }),
  );
  kernels.push(gatherPairs(P, D, act));
  // The LM head, its loss, and (the first of the backward) dhs = dlogits·wte.
  lmHead(b, { P, V, VP, D, act, head: o.path === 'f32' ? 'wte' : 'wte16' });

  // ---------- backward ----------
  kernels.push(scatterPairs(N, D));
  const copy16 = act === 'f16';
  kernels.push(layerNormBackward(N, D, act, { dy: 'dhf', x: xOff(2 * L), gamma: layout.lnf.gamma, stats: 2 * L * N * 2, mode: 'store', copy16 }));
  const dres: Operand = act === 'f32' ? opnd('dres', 0, 'f32') : opnd('dres16', 0, 'f16');

  for (let l = L - 1; l >= 0; l--) {
    const Ly = layout.layers[l];
    let scale = cfg.scaleAttnWeights ? 1 / Math.sqrt(D / H) : 1;
    if (cfg.scaleAttnByInverseLayerIdx) scale /= l + 1;
    linearBwd(Ly.proj['mlp.c_proj'], dres, opnd('dres', 0, 'f32'), opnd('gact', l * N * F, act), {
      geluGrad: { buffer: 'hpre', offset: l * N * F },
      out: { buffer: 'dact', offset: 0, ld: F, mode: 'store', type: act },
    });
    linearBwd(Ly.proj['mlp.c_fc'], opnd('dact', 0, act), opnd('dact', 0, act), opnd('lnM', lnOut('lnM', l), act), {
      out: { buffer: 'dln', offset: 0, ld: D, mode: 'store', type: act },
    });
    kernels.push(layerNormBackward(N, D, act, { dy: 'dln', x: xOff(2 * l + 1), gamma: Ly.ln2.gamma, stats: (2 * l + 1) * N * 2, mode: 'add', copy16 }));
    linearBwd(Ly.proj['attn.c_proj'], dres, opnd('dres', 0, 'f32'), opnd('ctx', l * N * D, act), {
      out: { buffer: 'dctx', offset: 0, ld: D, mode: 'store', type: act },
    });
    const bwdIo = { qkv: l * N * 3 * D, ctx: l * N * D, lse: l * B * H * T };
    kernels.push(...(vec ? attentionBackwardVec : attentionBackward)({ B, T, H, D, scale, act }, bwdIo, o.workgroupBytes));
    linearBwd(Ly.proj['attn.c_attn'], opnd('dqkv', 0, act), opnd('dqkv', 0, act), opnd('lnA', lnOut('lnA', l), act), {
      out: { buffer: 'dln', offset: 0, ld: D, mode: 'store', type: act },
    });
    kernels.push(layerNormBackward(N, D, act, { dy: 'dln', x: xOff(2 * l), gamma: Ly.ln1.gamma, stats: 2 * l * N * 2, mode: 'add', copy16 }));
  }

  // ---------- update ----------
  const nP = layout.adapterSize;
  kernels.push(...updateKernels(nP, o));
  kernels.unshift(...b.prologue());

  const f = (elems: number): { elems: number; type: 'f32' } => ({ elems: Math.max(1, elems), type: 'f32' });
  const a = (elems: number): { elems: number; type: 'f32' | 'f16' } => ({ elems: Math.max(1, elems), type: act });
  const u = (elems: number): { elems: number; type: 'u32' } => ({ elems: Math.max(1, elems), type: 'u32' });
  const buffers = new Map<string, { elems: number; type: 'f32' | 'f16' | 'u32' }>([
    ['wte', f(V * D)],
    ['wpe', f(cfg.nPositions * D)],
    ['w', { elems: layout.wSize, type: wt }],
    ['vec', f(layout.vecSize)],
    ['step', u(8)],
    ['ids', u(N)],
    ['pairRow', u(P)],
    ['pairTarget', u(P)],
    ['rowStart', u(N + 1)],
    ['rowPairs', u(P)],
    ['xres', f((2 * L + 1) * N * D)],
    ['stats', f((2 * L + 1) * N * 2)],
    ['lnA', a(L * N * D)],
    ['lnM', a(L * N * D)],
    ['qkv', f(L * N * 3 * D)],
    ['ctx', a(L * N * D)],
    ['lse', f(L * B * H * T)],
    ['hpre', f(L * N * F)],
    ['gact', a(L * N * F)],
    ['low', f(layout.loraModules * N * r)],
    ['hf', a(N * D)],
    ['hs', a(P * D)],
    ['logits', f(P * VP)],
    ['lossPart', f(P)],
    ['loss', f(2)],
    ['dhs', f(P * D)],
    ['dhf', f(N * D)],
    ['dres', f(N * D)],
    ['dact', a(N * F)],
    ['dln', a(N * D)],
    ['dctx', a(N * D)],
    ['dqkv', a(N * 3 * D)],
    ['delta', f(B * H * T)],
    ['du', f(N * r)],
    ['part', f(b.maxPart)],
    ['theta', f(nP)],
    ['grad', f(nP)],
    ['adamM', f(nP)],
    ['adamV', f(nP)],
    ['normPart', f(ceilDiv(nP, NORM_CHUNK))],
    ['norm', f(1)],
  ]);
  if (b.btSize > 0) buffers.set('loraBT', f(b.btSize));
  if (b.mmOut > 0) buffers.set('mmOut', f(b.mmOut));
  if (o.proximal) buffers.set('anchor', f(nP));
  if (b.dropoutModules.length > 0) buffers.set(DROP_KEY_BUFFER, u(b.dropoutModules.length));
  if (o.scaffold) for (const name of ['control', 'gsum']) buffers.set(name, f(nP));
  if (act === 'f16') {
    buffers.set('wte16', { elems: V * D, type: 'f16' });
    buffers.set('dlogits', { elems: P * VP, type: 'f16' });
    buffers.set('dres16', { elems: N * D, type: 'f16' });
  }
  for (const k of kernels) for (const b of k.bindings) if (!buffers.has(b.buffer)) throw new Error(`${k.label}: unknown buffer ${b.buffer}`);
  return { kernels, buffers, rows: N, maxPairs: P, gradWrites, dropoutModules: b.dropoutModules };
}
