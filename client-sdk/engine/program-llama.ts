// The Llama family's LoRA training step as an ordered list of kernels, in the same shape as GPT-2's (program.ts):
// forward through every decoder layer (RMSNorm, q/k/v projections, Qwen3's per-head RMSNorm of q and k, RoPE on q
// and k, grouped-query flash attention, o_proj + residual, RMSNorm, gate and up projections with SwiGLU fused into up's epilogue, down_proj +
// residual; Mistral's and Gemma 3's sliding windows per layer), the LM head and cross-entropy on the scored pairs only, backward through the frozen base into the
// adapter gradients of any of the seven LoRA modules, optional clipping, the site's optimiser (AdamW or SGD). Projection weights sit [in, out]
// in `w` (layout-llama.ts) so every matmul spec reads like GPT-2's. Gemma 3 (model/llama.ts) differs in: embeddings
// × √hidden; its (1 + w) norm scales, uploaded as such (layout-llama.ts); o_proj's and down_proj's outputs normed
// before their residual add (kept f32 in `subpre` for the backward, the add fused into the norm); the MLP's own input
// norm; a tanh-GELU gate; scores × query_pre_attn_scalar^-0.5; local layers' own rotary tables.
import type { LlamaConfig } from '../../proto/model/llama-config';
import { attentionForward, type AttnShape } from './attention';
import { attentionBackward } from './attention-backward';
import { attentionForwardTiled } from './attention-tiled';
import { attentionBackwardVec, attnVecOk } from './attention-backward-vec';
import { layerWindow } from './attention-window';
import { NO_TUNING } from './tuning';
import { ceilDiv } from './kernel';
import type { LlamaModelLayout, LlamaProjLayout } from './layout-llama';
import type { Operand } from './matmul';
import { NORM_CHUNK } from './optimizer';
import { lmHead, stepBuilder, updateKernels } from './program-kit';
import { DROP_KEY_BUFFER } from './dropout';
import type { Program, ProgramOptions } from './program';
import { ropeKernel } from './rope';
import { rmsNormBackward, rmsNormForward, tokenEmbedding, type HeadRows } from './rmsnorm';
import { gatherPairs, scatterPairs } from './rowwise';

export interface LlamaProgramOptions extends Omit<ProgramOptions, 'config' | 'layout'> {
  readonly config: LlamaConfig;
  readonly layout: LlamaModelLayout;
}

/** One of a layer's per-head norms (Qwen3): heads per token, its weight in `vec`, and its element offsets. */
interface HeadNorm {
  readonly count: number;
  readonly weight: number;
  /** In `qkpre`, `qkv` and `dqkv` (the backward's one-layer scratch), and its first rstd in `stats`. */
  readonly x: number;
  readonly y: number;
  readonly dy: number;
  readonly stats: number;
}

/**
 * Why the engine cannot run this Llama config at this sequence length, or undefined when it can. Nothing depends on
 * the length since sliding windows run (attention-window.ts); the parameter stays for checks that will.
 */
export function llamaEngineRefusal(cfg: LlamaConfig, _seq: number): string | undefined {
  if (cfg.headDim % 2 !== 0) return `head_dim ${cfg.headDim} is odd (rotary embeddings pair dimensions)`;
  if (cfg.nHead % cfg.nKvHead !== 0) return `num_attention_heads ${cfg.nHead} is not a multiple of num_key_value_heads ${cfg.nKvHead}`;
  return undefined;
}

export function buildLlamaProgram(o: LlamaProgramOptions): Program {
  const cfg = o.config;
  const { batch: B, seq: T, layout } = o;
  const D = cfg.nEmbd;
  const F = cfg.intermediateSize;
  const V = cfg.vocabSize;
  const H = cfg.nHead;
  const KV = cfg.nKvHead;
  const HD = cfg.headDim;
  const QW = H * HD;
  const KW = KV * HD;
  const QKVW = QW + 2 * KW;
  const QK = QW + KW;
  const qkNorm = cfg.qkNorm;
  const gemma = cfg.gemma3;
  const L = cfg.nLayer;
  const N = B * T;
  const VP = Math.ceil(V / 8) * 8;
  const P = N;
  const r = layout.r;
  const act: 'f32' | 'f16' = o.path === 'f32' ? 'f32' : 'f16';
  const wt = act;
  if (T > cfg.nPositions) throw new Error(`seq ${T} exceeds max_position_embeddings ${cfg.nPositions}`);
  const refusal = llamaEngineRefusal(cfg, T);
  if (refusal) throw new Error(refusal);
  if (N * Math.max(D, QKVW) > 65535 * 256) throw new Error(`batch·seq ${N} too large for one step`);
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
  const vec = !!tune.attnVec && attnVecOk(HD);
  const xOff = (i: number): number => i * N * D;
  const rope = { rows: N, T, H, kv: KV, hd: HD };
  // Each layer's attention: full causal, or within its sliding window (attention-window.ts); Gemma 3 scales scores
  // by query_pre_attn_scalar^-0.5.
  const scale = gemma ? gemma.queryPreAttnScalar ** -0.5 : 1 / Math.sqrt(HD);
  const attn = (l: number): AttnShape => ({ B, T, H, D, scale, act, kvHeads: KV, headDim: HD, window: layerWindow(cfg, l) });
  // Gemma 3's local layers rotate by the second table pair (weights.ts llamaRopeTables).
  const ropeTable = (l: number): number => (gemma?.slidingLayers[l] ? 2 * T * HD : 0);
  // Gemma 3: o_proj's (k = 2l) and down_proj's (2l + 1) outputs in `subpre`, and their norms' rstd after all others.
  const subOff = (k: number): number => k * N * D;
  const subStats = (k: number): number => (2 * L + 1) * N + (qkNorm ? L * N * (H + KV) : 0) + k * N;
  const copyRes = act === 'f16' && !gemma; // Gemma's matmuls read dln16, never dres16
  // Qwen3: q and k leave their projections (LoRA and bias included) in `qkpre` ([rows, q | k], f32, kept for the
  // backward), and each head's RMSNorm writes them where RoPE and attention read them, as model/llama.ts's headNorm.
  // Their rstd follow the other norms' in `stats`. The norm weights are frozen: backward needs only dq and dk.
  const qkStats = (l: number): number => (2 * L + 1) * N + l * N * (H + KV);
  const headNorms = (l: number, Ly: LlamaModelLayout['layers'][number]): { q: HeadNorm; k: HeadNorm } => {
    if (Ly.qNorm === undefined || Ly.kNorm === undefined) throw new Error(`layer ${l} has no q/k norm weights`);
    const qkv = l * N * QKVW;
    const pre = l * N * QK;
    return {
      q: { count: H, weight: Ly.qNorm, x: pre, y: qkv, dy: 0, stats: qkStats(l) },
      k: { count: KV, weight: Ly.kNorm, x: pre + QW, y: qkv + QW, dy: QW, stats: qkStats(l) + N * H },
    };
  };
  const heads = (n: HeadNorm): HeadRows => ({ count: n.count, xBuf: 'qkpre', xLd: QK, yLd: QKVW });

  const gateAct = gemma ? { act: 'gelu' as const } : {};
  /** Sublayer k's output projection into the residual stream, xres slice k + 1 = slice k + out (Gemma 3: + norm(out)). */
  const sublayerOut = (p: LlamaProjLayout, x: Operand, k: number, norm: number | undefined): void => {
    if (!gemma) {
      linearFwd(p, x, { residual: { buffer: 'xres', offset: xOff(k) }, out: { buffer: 'xres', offset: xOff(k + 1), ld: D, mode: 'store' } });
      return;
    }
    if (norm === undefined) throw new Error(`layer ${p.layer} has no norm after ${p.proj}`);
    linearFwd(p, x, { out: { buffer: 'subpre', offset: subOff(k), ld: D, mode: 'store' } });
    const sublayer = { xBuf: 'subpre', residual: xOff(k) };
    kernels.push(rmsNormForward(N, D, cfg.rmsNormEps, 'f32', { x: subOff(k), weight: norm, y: 'xres', yOff: xOff(k + 1), stats: subStats(k), sublayer }));
  };
  /** The gradient into sublayer k's output projection: dres itself, or (Gemma 3) dres back through its norm, in dln. */
  const sublayerGrad = (k: number, norm: number | undefined): { dy: Operand; dyLora: Operand } => {
    if (!gemma) return { dy: dres, dyLora: dresF32 };
    if (norm === undefined) throw new Error(`layer ${Math.floor(k / 2)} has no norm after its sublayer`);
    const sublayer = { xBuf: 'subpre', dx: 'dln', dx16: 'dln16' };
    kernels.push(
      rmsNormBackward(N, D, { dy: 'dres', dyType: 'f32', x: subOff(k), weight: norm, stats: subStats(k), mode: 'store', copy16: act === 'f16', sublayer }),
    );
    return { dy: act === 'f32' ? opnd('dln', 0, 'f32') : opnd('dln16', 0, 'f16'), dyLora: opnd('dln', 0, 'f32') };
  };

  // ---------- forward ----------
  kernels.push(tokenEmbedding(N, D, gemma ? Math.sqrt(D) : undefined));
  for (let l = 0; l < L; l++) {
    const Ly = layout.layers[l];
    const pr = Ly.proj;
    const qkv = l * N * QKVW;
    kernels.push(rmsNormForward(N, D, cfg.rmsNormEps, act, { x: xOff(2 * l), weight: Ly.inputNorm, y: 'lnA', yOff: l * N * D, stats: 2 * l * N }));
    const a = opnd('lnA', l * N * D, act);
    // q, k and v land side by side in one [rows, q | k | v] buffer, the layout the attention kernels read.
    const qk = qkNorm ? { buffer: 'qkpre', offset: l * N * QK, ld: QK } : { buffer: 'qkv', offset: qkv, ld: QKVW };
    linearFwd(pr['self_attn.q_proj'], a, { out: { ...qk, mode: 'store' } });
    linearFwd(pr['self_attn.k_proj'], a, { out: { ...qk, offset: qk.offset + QW, mode: 'store' } });
    linearFwd(pr['self_attn.v_proj'], a, { out: { buffer: 'qkv', offset: qkv + QW + KW, ld: QKVW, mode: 'store' } });
    if (qkNorm) {
      const n = headNorms(l, Ly);
      for (const h of [n.q, n.k])
        kernels.push(rmsNormForward(N, HD, cfg.rmsNormEps, 'f32', { x: h.x, weight: h.weight, y: 'qkv', yOff: h.y, stats: h.stats, heads: heads(h) }));
    }
    kernels.push(ropeKernel(rope, 'fwd', { buffer: 'qkv', type: 'f32', offset: qkv, table: ropeTable(l) }));
    const attnIo = { qkv, ctx: l * N * QW, lse: l * B * H * T };
    kernels.push(tune.attnTiled ? attentionForwardTiled(attn(l), attnIo, o.workgroupBytes, vec) : attentionForward(attn(l), attnIo));
    // x' = x + o_proj(ctx); Gemma 3: x' = x + norm(o_proj(ctx)).
    sublayerOut(pr['self_attn.o_proj'], opnd('ctx', l * N * QW, act), 2 * l, Ly.postNorm);
    // The MLP's input norm: post_attention_layernorm, or Gemma 3's pre_feedforward_layernorm.
    const mlpNorm = Ly.preFfnNorm ?? Ly.postNorm;
    kernels.push(rmsNormForward(N, D, cfg.rmsNormEps, act, { x: xOff(2 * l + 1), weight: mlpNorm, y: 'lnM', yOff: l * N * D, stats: (2 * l + 1) * N }));
    const m = opnd('lnM', l * N * D, act);
    linearFwd(pr['mlp.gate_proj'], m, { out: { buffer: 'gpre', offset: l * N * F, ld: F, mode: 'store' } });
    linearFwd(pr['mlp.up_proj'], m, {
      swiglu: { gate: { buffer: 'gpre', offset: l * N * F }, up: { buffer: 'upre', offset: l * N * F }, ...gateAct },
      out: { buffer: 'gact', offset: l * N * F, ld: F, mode: 'store', type: act },
    });
    sublayerOut(pr['mlp.down_proj'], opnd('gact', l * N * F, act), 2 * l + 1, Ly.postFfnNorm);
  }
  kernels.push(rmsNormForward(N, D, cfg.rmsNormEps, act, { x: xOff(2 * L), weight: layout.norm, y: 'hf', yOff: 0, stats: 2 * L * N }));
  kernels.push(gatherPairs(P, D, act));
  // The LM head (tied: wte; untied: lmhead, f32 path; f16 paths read wte16, filled from the head), its loss, and
  // (the first of the backward) dhs = dlogits·head.
  lmHead(b, { P, V, VP, D, act, head: o.path === 'f32' ? (cfg.tieWordEmbeddings ? 'wte' : 'lmhead') : 'wte16' });

  // ---------- backward ----------
  kernels.push(scatterPairs(N, D));
  kernels.push(rmsNormBackward(N, D, { dy: 'dhf', dyType: 'f32', x: xOff(2 * L), weight: layout.norm, stats: 2 * L * N, mode: 'store', copy16: copyRes }));
  const dres: Operand = act === 'f32' ? opnd('dres', 0, 'f32') : opnd('dres16', 0, 'f16');
  const dresF32 = opnd('dres', 0, 'f32');

  for (let l = L - 1; l >= 0; l--) {
    const Ly = layout.layers[l];
    const pr = Ly.proj;
    const m = opnd('lnM', l * N * D, act);
    // down_proj's dx epilogue is SwiGLU's backward: d(gate) to dgate, d(up) to dup.
    const dDown = sublayerGrad(2 * l + 1, Ly.postFfnNorm);
    linearBwd(pr['mlp.down_proj'], dDown.dy, dDown.dyLora, opnd('gact', l * N * F, act), {
      swigluGrad: {
        gate: { buffer: 'gpre', offset: l * N * F },
        up: { buffer: 'upre', offset: l * N * F },
        dUp: { buffer: 'dup', offset: 0, type: act },
        ...gateAct,
      },
      out: { buffer: 'dgate', offset: 0, ld: F, mode: 'store', type: act },
    });
    // gate and up both read the post-attention norm's output: their dx add up in dln (f32).
    linearBwd(pr['mlp.up_proj'], opnd('dup', 0, act), opnd('dup', 0, act), m, { out: { buffer: 'dln', offset: 0, ld: D, mode: 'store' } });
    linearBwd(pr['mlp.gate_proj'], opnd('dgate', 0, act), opnd('dgate', 0, act), m, { out: { buffer: 'dln', offset: 0, ld: D, mode: 'add' } });
    const mlpNorm = Ly.preFfnNorm ?? Ly.postNorm;
    kernels.push(
      rmsNormBackward(N, D, { dy: 'dln', dyType: 'f32', x: xOff(2 * l + 1), weight: mlpNorm, stats: (2 * l + 1) * N, mode: 'add', copy16: copyRes }),
    );
    const dO = sublayerGrad(2 * l, Ly.postNorm);
    linearBwd(pr['self_attn.o_proj'], dO.dy, dO.dyLora, opnd('ctx', l * N * QW, act), { out: { buffer: 'dctx', offset: 0, ld: QW, mode: 'store', type: act } });
    kernels.push(...(vec ? attentionBackwardVec : attentionBackward)(attn(l), { qkv: l * N * QKVW, ctx: l * N * QW, lse: l * B * H * T }, o.workgroupBytes));
    kernels.push(ropeKernel(rope, 'bwd', { buffer: 'dqkv', type: act, offset: 0, table: ropeTable(l) }));
    if (qkNorm) {
      const n = headNorms(l, Ly);
      for (const h of [n.q, n.k])
        kernels.push(
          rmsNormBackward(N, HD, {
            dy: 'dqkv',
            dyType: act,
            x: h.x,
            weight: h.weight,
            stats: h.stats,
            mode: 'store',
            copy16: false,
            heads: { ...heads(h), dyOff: h.dy },
          }),
        );
    }
    const a = opnd('lnA', l * N * D, act);
    const dq = opnd('dqkv', 0, act, false, QKVW);
    const dk = opnd('dqkv', QW, act, false, QKVW);
    const dv = opnd('dqkv', QW + KW, act, false, QKVW);
    linearBwd(pr['self_attn.q_proj'], dq, dq, a, { out: { buffer: 'dln', offset: 0, ld: D, mode: 'store' } });
    linearBwd(pr['self_attn.k_proj'], dk, dk, a, { out: { buffer: 'dln', offset: 0, ld: D, mode: 'add' } });
    linearBwd(pr['self_attn.v_proj'], dv, dv, a, { out: { buffer: 'dln', offset: 0, ld: D, mode: 'add' } });
    kernels.push(rmsNormBackward(N, D, { dy: 'dln', dyType: 'f32', x: xOff(2 * l), weight: Ly.inputNorm, stats: 2 * l * N, mode: 'add', copy16: copyRes }));
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
    ['w', { elems: layout.wSize, type: wt }],
    ['vec', f(layout.vecSize)],
    ['rope', f((gemma ? 4 : 2) * T * HD)],
    ['step', u(8)],
    ['ids', u(N)],
    ['pairRow', u(P)],
    ['pairTarget', u(P)],
    ['rowStart', u(N + 1)],
    ['rowPairs', u(P)],
    ['xres', f((2 * L + 1) * N * D)],
    ['stats', f((2 * L + 1) * N + (qkNorm ? L * N * (H + KV) : 0) + (gemma ? 2 * L * N : 0))],
    ['lnA', a(L * N * D)],
    ['lnM', a(L * N * D)],
    ['qkv', f(L * N * QKVW)],
    ['ctx', a(L * N * QW)],
    ['lse', f(L * B * H * T)],
    ['gpre', f(L * N * F)],
    ['upre', f(L * N * F)],
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
    ['dgate', a(N * F)],
    ['dup', a(N * F)],
    ['dln', f(N * D)],
    ['dctx', a(N * QW)],
    ['dqkv', a(N * QKVW)],
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
  if (qkNorm) buffers.set('qkpre', f(L * N * QK));
  if (gemma) buffers.set('subpre', f(2 * L * N * D));
  if (b.btSize > 0) buffers.set('loraBT', f(b.btSize));
  if (b.mmOut > 0) buffers.set('mmOut', f(b.mmOut));
  if (o.proximal) buffers.set('anchor', f(nP));
  if (b.dropoutModules.length > 0) buffers.set(DROP_KEY_BUFFER, u(b.dropoutModules.length));
  if (o.scaffold) for (const name of ['control', 'gsum']) buffers.set(name, f(nP));
  if (act === 'f32' && !cfg.tieWordEmbeddings) buffers.set('lmhead', f(V * D));
  if (act === 'f16') {
    buffers.set('wte16', { elems: V * D, type: 'f16' });
    buffers.set('dlogits', { elems: P * VP, type: 'f16' });
    buffers.set(gemma ? 'dln16' : 'dres16', { elems: N * D, type: 'f16' });
  }
  for (const k of kernels) for (const b of k.bindings) if (!buffers.has(b.buffer)) throw new Error(`${k.label}: unknown buffer ${b.buffer}`);
  return { kernels, buffers, rows: N, maxPairs: P, gradWrites, dropoutModules: b.dropoutModules };
}
