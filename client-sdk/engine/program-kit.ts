// What every model family's step program builds the same way (program.ts: GPT-2; program-llama.ts: the Llama
// family): the matmul kernel per path, a LoRA linear layer forward and backward, the LM head with its loss and
// the gradient back into the final hidden states, and the update (optional global-norm clip, then the site's
// optimiser). A family's program supplies only its own blocks (norms, attention, MLP) and buffers.
import type { ClientOptimizer } from '../../proto/model/client-optimizer';
import type { DropoutSpec, StepDropout } from './dropout';
import type { Epilogue } from './epilogue';
import { ceilDiv, type Kernel } from './kernel';
import { crossEntropy, lossMean } from './loss';
import { tiledMatmul, type MatmulSpec, type Operand } from './matmul';
import { tcMatmul } from './matmul-tc';
import { adamW, gradNorm, reduceSplitK, sgd } from './optimizer';
import { tileFor, type EngineTuning } from './tuning';
import { loraTranspose, type LoraTModule } from './lora-transpose';
import { epiloguePass, isPlainEpilogue, mmOutElems, plainProduct } from './epilogue-pass';

/** Rows per split of a split-K reduction over the batch's rows (the adapter gradients). */
const SPLIT_ROWS = 256;

/** A projection as both families lay it out: W [in, out] in `w`, an optional bias in `vec`, optional LoRA. */
export interface LinearLayout {
  readonly layer: number;
  readonly proj: string;
  readonly inF: number;
  readonly outF: number;
  readonly w: number;
  readonly bias?: number;
  readonly lora?: { readonly a: number; readonly b: number; readonly low: number };
}

export interface StepBuilder {
  /** The step's kernels, in dispatch order. */
  readonly kernels: Kernel[];
  /** [offset, length] of every adapter-gradient region written. */
  readonly gradWrites: [number, number][];
  /** Elements the split-K partials buffer `part` needs so far. */
  maxPart: number;
  /** The LoRA modules with dropout, in key order: dropKey[i] is the key of dropoutModules[i] (empty without dropout). */
  readonly dropoutModules: { readonly layer: number; readonly proj: string }[];
  /** Modules whose forward reads lora_B transposed from `loraBT` (tuning.loraT), and that buffer's length. */
  readonly loraT: LoraTModule[];
  btSize: number;
  /** Elements of `mmOut`, the bare products whose epilogue runs as its own pass (tuning.epiSplit). */
  mmOut: number;
  /** Kernels that must run first in the step (the lora_B transpose), to be put in front of `kernels`. */
  readonly prologue: () => Kernel[];
  readonly mm: (spec: MatmulSpec) => void;
  readonly opnd: (buffer: string, offset: number, type: 'f32' | 'f16', trans?: boolean, ld?: number) => Operand;
  /** u = x·Aᵀ (LoRA input), then y = x·W (+ b) + s·u·Bᵀ with `epi` (residual, activation, output). */
  readonly linearFwd: (p: LinearLayout, x: Operand, epi: Omit<Epilogue, 'bias' | 'lora'>) => void;
  /** Adapter grads of one module (dB = s·dyᵀu, dA = duᵀx, both ×1/P) and dx = dy·Wᵀ + du·A with `epi`. */
  readonly linearBwd: (p: LinearLayout, dy: Operand, dyLora: Operand, x: Operand, epi: Omit<Epilogue, 'lora'>) => void;
}

export interface StepShapeOptions {
  readonly path: 'f32' | 'f16' | 'tc';
  readonly loraScale: number;
  /** Rows of the step (batch · seq). */
  readonly rows: number;
  /** The adapter's rank. */
  readonly r: number;
  /** LoRA dropout (dropout.ts); absent or p = 0: none, and no kernel changes. */
  readonly dropout?: StepDropout;
  /** Kernel choices (tuning.ts); absent: the defaults. */
  readonly tuning?: EngineTuning;
}

export function stepBuilder(o: StepShapeOptions): StepBuilder {
  const N = o.rows;
  const r = o.r;
  const wt: 'f32' | 'f16' = o.path === 'f32' ? 'f32' : 'f16';
  const S = Math.max(2, Math.min(64, ceilDiv(N, SPLIT_ROWS)));
  const drop = o.dropout && o.dropout.p > 0 ? o.dropout : undefined;
  const tune = o.tuning;
  const split = tune?.loraSplitK ?? 0;
  /** Split-K slices for a LoRA side product of depth K (1: none). */
  const sideSplit = (K: number): number => (split > 0 ? Math.min(64, Math.ceil(K / split)) : 1);
  const keys = new Map<string, number>();
  /** The dropout of a LoRA module's input (its key index fixed at first use, i.e. in forward order). */
  const dropFor = (p: LinearLayout): DropoutSpec | undefined => {
    if (!drop || !p.lora) return undefined;
    const name = `${p.layer}:${p.proj}`;
    let key = keys.get(name);
    if (key === undefined) {
      key = b.dropoutModules.length;
      keys.set(name, key);
      b.dropoutModules.push({ layer: p.layer, proj: p.proj });
    }
    return { ...drop, key };
  };
  const b: StepBuilder = {
    kernels: [],
    gradWrites: [],
    maxPart: 1,
    dropoutModules: [],
    loraT: [],
    btSize: 0,
    mmOut: 0,
    prologue: () => (b.loraT.length > 0 ? [loraTranspose(b.loraT, r)] : []),
    mm: (spec) => {
      // Tensor cores only where both operands are f16 and the tile is worth it (and no operand is dropped out:
      // those are LoRA products with an f32 operand anyway).
      const big = spec.N > 16 && spec.M > 16;
      const tc = o.path === 'tc' && big && spec.a.type === 'f16' && spec.b.type === 'f16' && !spec.a.dropout && !spec.b.dropout;
      const tile = tileFor(tune, spec.label);
      if (tc && tune?.epiSplit && !spec.splitK && !isPlainEpilogue(spec.epi)) {
        b.kernels.push(tcMatmul(plainProduct(spec), undefined, tile), epiloguePass(spec));
        b.mmOut = Math.max(b.mmOut, mmOutElems(spec));
      } else b.kernels.push(tc ? tcMatmul(spec, undefined, tile) : tiledMatmul(spec));
    },
    opnd: (buffer, offset, type, trans = false, ld) => (ld === undefined ? { buffer, offset, type, trans } : { buffer, offset, type, trans, ld }),
    linearFwd: (p, x, epi) => {
      const name = `h${p.layer}.${p.proj}`;
      let mat: { buffer: string; offset: number; layout: 'nr' | 'rn' } | undefined;
      if (p.lora) {
        const dropout = dropFor(p);
        const S = sideSplit(p.inF);
        b.mm({
          label: `lora.u ${name}`,
          M: N,
          N: r,
          K: p.inF,
          ...(S > 1 ? { splitK: S } : {}),
          // u = dropout(x)·Aᵀ: the mask multiplies x as it is loaded; the base product below reads x undropped.
          a: dropout ? { ...x, dropout } : x,
          b: b.opnd('theta', p.lora.a, 'f32', true),
          epi: { out: S > 1 ? { buffer: 'part', offset: 0, ld: r, mode: 'store' } : { buffer: 'low', offset: p.lora.low, ld: r, mode: 'store' } },
        });
        if (S > 1) {
          b.kernels.push(reduceSplitK(`lora.u.sum ${name}`, S, N * r, p.lora.low, 'low'));
          b.maxPart = Math.max(b.maxPart, S * N * r);
        }
        mat = { buffer: 'theta', offset: p.lora.b, layout: 'nr' };
        if (tune?.loraT) {
          // lora_B [out, r] read as [r, out]: the epilogue's loads run along n (coalesced), same values, same order.
          b.loraT.push({ b: p.lora.b, outF: p.outF, bt: b.btSize });
          mat = { buffer: 'loraBT', offset: b.btSize, layout: 'rn' };
          b.btSize += p.outF * r;
        }
      }
      const lora =
        p.lora && mat
          ? { low: { buffer: 'low', offset: p.lora.low }, mat: { buffer: mat.buffer, offset: mat.offset }, layout: mat.layout, r, scale: o.loraScale }
          : undefined;
      const bias = p.bias === undefined ? undefined : { buffer: 'vec', offset: p.bias };
      b.mm({ label: `fwd ${name}`, M: N, N: p.outF, K: p.inF, a: x, b: b.opnd('w', p.w, wt), epi: { ...epi, bias, lora } });
    },
    linearBwd: (p, dy, dyLora, x, epi) => {
      const name = `h${p.layer}.${p.proj}`;
      const dropout = dropFor(p);
      if (p.lora) {
        const Su = sideSplit(p.outF);
        b.mm({
          label: `lora.du ${name}`,
          M: N,
          N: r,
          K: p.outF,
          ...(Su > 1 ? { splitK: Su } : {}),
          a: dyLora,
          b: b.opnd('theta', p.lora.b, 'f32'),
          epi: { scale: o.loraScale, out: Su > 1 ? { buffer: 'part', offset: 0, ld: r, mode: 'store' } : { buffer: 'du', offset: 0, ld: r, mode: 'store' } },
        });
        if (Su > 1) {
          b.kernels.push(reduceSplitK(`lora.du.sum ${name}`, Su, N * r, 0, 'du'));
          b.maxPart = Math.max(b.maxPart, Su * N * r);
        }
        b.mm({
          label: `lora.dB ${name}`,
          M: p.outF,
          N: r,
          K: N,
          splitK: S,
          a: { ...dyLora, trans: true },
          b: b.opnd('low', p.lora.low, 'f32'),
          epi: { scale: o.loraScale, out: { buffer: 'part', offset: 0, ld: r, mode: 'store' } },
        });
        b.kernels.push(reduceSplitK(`lora.dB.sum ${name}`, S, p.outF * r, p.lora.b));
        b.mm({
          label: `lora.dA ${name}`,
          M: r,
          N: p.inF,
          K: N,
          splitK: S,
          a: b.opnd('du', 0, 'f32', true),
          // dA = duᵀ·dropout(x): the same mask as forward, recomputed as x is loaded.
          b: dropout ? { ...x, dropout } : x,
          epi: { out: { buffer: 'part', offset: 0, ld: p.inF, mode: 'store' } },
        });
        b.kernels.push(reduceSplitK(`lora.dA.sum ${name}`, S, r * p.inF, p.lora.a));
        b.maxPart = Math.max(b.maxPart, S * p.outF * r, S * r * p.inF);
        b.gradWrites.push([p.lora.b, p.outF * r], [p.lora.a, r * p.inF]);
      }
      // dx's LoRA term is mask ⊙ (du·A): the chain rule through dropout(x), in the dx epilogue.
      const low = { buffer: 'du', offset: 0 };
      const mat = { buffer: 'theta', offset: p.lora?.a ?? 0 };
      const lora = p.lora ? { low, mat, layout: 'rn' as const, r, scale: 1, ...(dropout ? { dropout } : {}) } : undefined;
      b.mm({ label: `bwd.dx ${name}`, M: N, N: p.inF, K: p.outF, a: dy, b: b.opnd('w', p.w, wt, true), epi: { ...epi, lora } });
    },
  };
  return b;
}

/**
 * The LM head on the gathered hidden states `hs` of the P scored pairs: logits = hs·headᵀ (row stride VP),
 * cross-entropy and the loss mean; then, backward, dhs = dlogits·head (split-K over the vocabulary).
 */
export function lmHead(b: StepBuilder, s: { P: number; V: number; VP: number; D: number; act: 'f32' | 'f16'; head: string }): void {
  const { P, V, VP, D, act, head } = s;
  const wt = act;
  b.mm({
    label: 'lm.logits',
    M: P,
    N: V,
    K: D,
    rowsArePairs: true,
    a: b.opnd('hs', 0, act),
    b: b.opnd(head, 0, wt, true),
    epi: { out: { buffer: 'logits', offset: 0, ld: VP, mode: 'store' } },
  });
  b.kernels.push(crossEntropy(P, V, VP, act));
  b.kernels.push(lossMean(P));
  const dlog = act === 'f32' ? 'logits' : 'dlogits';
  // dhs = dlogits·head reduces over the vocabulary with only P·D outputs: split-K keeps the GPU busy.
  const SV = Math.max(2, Math.min(32, ceilDiv(V, 2048)));
  b.mm({
    label: 'lm.dhs',
    M: P,
    N: D,
    K: V,
    rowsArePairs: true,
    splitK: SV,
    a: { ...b.opnd(dlog, 0, act), ld: VP },
    b: b.opnd(head, 0, wt),
    epi: { out: { buffer: 'part', offset: 0, ld: D, mode: 'store' } },
  });
  b.kernels.push(reduceSplitK('lm.dhs.sum', SV, P * D, 0, 'dhs'));
  b.maxPart = Math.max(b.maxPart, SV * P * D);
}

/** The update over the flat adapter of nP values: the global norm when clipping, then AdamW or SGD. */
export function updateKernels(
  nP: number,
  o: {
    readonly clip?: boolean;
    readonly proximal?: boolean;
    readonly scaffold?: boolean;
    readonly adam: { readonly beta1: number; readonly beta2: number; readonly eps: number };
    readonly optimizer?: ClientOptimizer;
  },
): Kernel[] {
  const clip = !!o.clip;
  const proximal = !!o.proximal;
  const scaffold = !!o.scaffold;
  return [
    ...(clip ? gradNorm(nP) : []),
    o.optimizer?.name === 'sgd' ? sgd(nP, o.optimizer.momentum, clip, proximal, scaffold) : adamW(nP, o.adam, clip, proximal, scaffold),
  ];
}
