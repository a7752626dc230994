// LoRA with PEFT's semantics and names, so adapters trained here load in `peft` and vice versa:
//   y = base(x) + dropout(x) @ Aᵀ @ Bᵀ · scaling,  A [r, in], B [out, r],  scaling = alpha / r (or alpha / √r).
// Keys are PEFT's saved names, `base_model.model.transformer.h.{i}.attn.c_attn.lora_A.weight` for GPT-2 and
// `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` for the Llama family; on load the
// adapter-name infix (`lora_A.default.weight`) is accepted too. Adapters travel as NamedTensor[] sorted by name.
// This file is the tfjs-free half both sides share: config, names, layout, and the initial adapter the
// coordinator publishes as version 0. The SDK's tfjs state for training lives in client-sdk/model/lora.ts.
import type { NamedTensor, TensorList } from '../tensors';
import { sortByName } from '../tensors';
import { familyLabel, moduleFullName, projectionCandidates, projectionInOut, projectionNames, type ModelConfig } from './model-config';
import { hashString, Prng } from '../prng';

export interface LoraConfig {
  readonly r: number;
  readonly alpha: number;
  /** Dropout probability on the LoRA input while training. */
  readonly dropout: number;
  /**
   * PEFT target_modules: a list of names, each matching a module whose full name equals it or ends with
   * `.name` (so 'c_proj' hits attn.c_proj and mlp.c_proj); or one regex that must match the full name
   * (`transformer.h.0.attn.c_attn`); or 'all-linear'.
   */
  readonly targetModules: readonly string[] | string;
  /** PEFT use_rslora: scaling alpha/√r instead of alpha/r. */
  readonly useRslora?: boolean;
  /** PEFT layers_to_transform: only these block indices get LoRA. */
  readonly layersToTransform?: readonly number[];
}

export function loraScaling(c: LoraConfig): number {
  return c.useRslora ? c.alpha / Math.sqrt(c.r) : c.alpha / c.r;
}

export function validateLoraConfig(c: LoraConfig): void {
  if (!Number.isInteger(c.r) || c.r <= 0) throw new Error(`LoRA r must be a positive integer, got ${c.r}`);
  if (!(c.alpha > 0)) throw new Error(`LoRA alpha must be positive, got ${c.alpha}`);
  if (!(c.dropout >= 0 && c.dropout < 1)) throw new Error(`LoRA dropout must be in [0, 1), got ${c.dropout}`);
}

const PEFT_MODEL_PREFIX = 'base_model.model.';

/** PEFT's saved key for one LoRA matrix of a module path (`h.0.attn.c_attn`, `layers.0.mlp.up_proj`). */
export function peftKey(path: string, which: 'A' | 'B'): string {
  return `${PEFT_MODEL_PREFIX}${moduleFullName(path)}.lora_${which}.weight`;
}

const KEY_RE = new RegExp(
  '^(?:base_model\\.model\\.)?(?:transformer\\.|model\\.)?' +
    '(h\\.\\d+\\.(?:attn|mlp)\\.c_[a-z]+|layers\\.\\d+\\.(?:self_attn\\.[qkvo]_proj|mlp\\.(?:gate|up|down)_proj))' +
    '\\.lora_([AB])(?:\\.[A-Za-z0-9_-]+)?\\.weight$',
);

/** Module path and matrix of a PEFT key, accepting the `.default` adapter-name infix; undefined if not LoRA. */
export function parsePeftKey(name: string): { path: string; which: 'A' | 'B' } | undefined {
  const m = KEY_RE.exec(name);
  return m ? { path: m[1], which: m[2] as 'A' | 'B' } : undefined;
}

/** Does a PEFT target_modules spec select this module (full name, e.g. `transformer.h.0.mlp.c_proj`)? */
export function matchesTarget(fullName: string, target: readonly string[] | string): boolean {
  if (typeof target === 'string') {
    if (target === 'all-linear') return true; // every Conv1D in the blocks; the LM head is excluded as PEFT does
    return new RegExp(`^(?:${target})$`).test(fullName);
  }
  return target.some((t) => fullName === t || fullName.endsWith('.' + t));
}

/** Module paths (`h.{i}.attn.c_attn`, `layers.{i}.mlp.up_proj`, …) that get LoRA, sorted; throws when a target matches nothing. */
export function loraTargetPaths(model: ModelConfig, lora: LoraConfig): string[] {
  const candidates = projectionCandidates(model, lora.layersToTransform);
  const chosen = candidates.filter((p) => matchesTarget(moduleFullName(p), lora.targetModules));
  const targets = typeof lora.targetModules === 'string' ? [lora.targetModules] : lora.targetModules;
  for (const t of targets) {
    if (!candidates.some((p) => matchesTarget(moduleFullName(p), typeof lora.targetModules === 'string' ? t : [t]))) {
      throw new Error(`LoRA target '${t}' matches no ${familyLabel(model)} projection (supported: ${projectionNames(model)})`);
    }
  }
  return chosen.sort();
}

/** PEFT key → shape for every LoRA tensor of this model and config. */
export function loraTensorShapes(model: ModelConfig, lora: LoraConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const p of loraTargetPaths(model, lora)) {
    const [inF, outF] = projectionInOut(model, p);
    m.set(peftKey(p, 'A'), [lora.r, inF]);
    m.set(peftKey(p, 'B'), [outF, lora.r]);
  }
  return m;
}

/**
 * A fresh adapter as PEFT initialises it: A ~ kaiming_uniform_(a=√5), i.e. U(-1/√in, 1/√in), B = 0.
 * Each A draws from its own stream (seed, key) so the values do not depend on which other modules exist.
 */
export function initLoraAdapter(model: ModelConfig, lora: LoraConfig, seed: number): NamedTensor[] {
  validateLoraConfig(lora);
  const out: NamedTensor[] = [];
  for (const [name, shape] of loraTensorShapes(model, lora)) {
    const data = new Float32Array(shape[0] * shape[1]);
    if (name.includes('.lora_A.')) {
      const bound = 1 / Math.sqrt(shape[1]);
      const rng = new Prng(seed, hashString(name));
      for (let i = 0; i < data.length; i++) data[i] = (2 * rng.nextFloat() - 1) * bound;
    }
    out.push({ name, dtype: 'float32', shape, data });
  }
  return sortByName(out);
}

/** Adapter with canonical PEFT names (adapter-name infix dropped), sorted; non-LoRA tensors are an error. */
export function canonicalAdapter(tensors: TensorList): NamedTensor[] {
  const seen = new Set<string>();
  const out = tensors.map((t) => {
    const k = parsePeftKey(t.name);
    if (!k) throw new Error(`'${t.name}' is not a LoRA tensor of a GPT-2 or Llama-family projection`);
    const name = peftKey(k.path, k.which);
    if (seen.has(name)) throw new Error(`LoRA tensor ${name} appears twice`);
    seen.add(name);
    return name === t.name ? t : { ...t, name };
  });
  return sortByName(out);
}

/** Throws unless `adapter` has exactly the tensors and shapes this model and LoRA config imply. */
export function assertAdapterLayout(adapter: TensorList, model: ModelConfig, lora: LoraConfig): void {
  const expected = loraTensorShapes(model, lora);
  const got = new Map(adapter.map((t) => [t.name, t.shape]));
  for (const [name, shape] of expected) {
    const s = got.get(name);
    if (!s) throw new Error(`adapter lacks ${name}`);
    if (s.join(',') !== shape.join(',')) throw new Error(`adapter tensor ${name} has shape [${s}], expected [${shape}]`);
  }
  for (const name of got.keys()) if (!expected.has(name)) throw new Error(`adapter has unexpected tensor ${name}`);
}

export { peftAdapterConfig, loraConfigFromPeft, type PeftAdapterConfig } from './peft-config';
