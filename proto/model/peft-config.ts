// adapter_config.json as PEFT writes and reads it, and its conversion to and from fedtune's LoraConfig.
import type { LoraConfig } from './lora-layout';
import { validateLoraConfig } from './lora-layout';

export interface PeftAdapterConfig {
  peft_type: 'LORA';
  task_type: 'CAUSAL_LM';
  base_model_name_or_path: string;
  revision: string | null;
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: string[] | string;
  /** GPT-2's Conv1D stores weights [in, out]; PEFT needs this to merge the delta with the right transpose. */
  fan_in_fan_out: boolean;
  bias: 'none';
  use_rslora: boolean;
  use_dora: boolean;
  modules_to_save: string[] | null;
  init_lora_weights: boolean;
  layers_to_transform: number[] | null;
  layers_pattern: string | null;
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  inference_mode: boolean;
  auto_mapping: null;
  [key: string]: unknown;
}

/**
 * `fanInFanOut`: true for GPT-2's Conv1D ([in, out] weights), false for the Llama family's nn.Linear; PEFT uses it
 * only to merge, but a wrong value makes a merged model wrong (see model-config.ts fanInFanOut).
 */
export function peftAdapterConfig(lora: LoraConfig, baseModelName: string, fanInFanOut = true): PeftAdapterConfig {
  validateLoraConfig(lora);
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModelName,
    revision: null,
    r: lora.r,
    lora_alpha: lora.alpha,
    lora_dropout: lora.dropout,
    target_modules: typeof lora.targetModules === 'string' ? lora.targetModules : [...lora.targetModules],
    fan_in_fan_out: fanInFanOut,
    bias: 'none',
    use_rslora: lora.useRslora ?? false,
    use_dora: false,
    modules_to_save: null,
    init_lora_weights: true,
    layers_to_transform: lora.layersToTransform ? [...lora.layersToTransform] : null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    inference_mode: true,
    auto_mapping: null,
  };
}

/** Reads PEFT's adapter_config.json; features fedtune does not implement are rejected rather than ignored. */
export function loraConfigFromPeft(json: unknown): LoraConfig {
  if (typeof json !== 'object' || json === null) throw new Error('adapter_config.json: not an object');
  const c = json as Record<string, unknown>;
  if (c.peft_type !== undefined && c.peft_type !== 'LORA') throw new Error(`adapter_config.json: peft_type ${String(c.peft_type)} is not LORA`);
  const unsupported: string[] = [];
  if (c.use_dora === true) unsupported.push('use_dora');
  if (c.bias !== undefined && c.bias !== 'none') unsupported.push(`bias=${String(c.bias)}`);
  if (Array.isArray(c.modules_to_save) && c.modules_to_save.length > 0) unsupported.push('modules_to_save');
  for (const k of ['rank_pattern', 'alpha_pattern']) {
    const v = c[k];
    if (v && typeof v === 'object' && Object.keys(v).length > 0) unsupported.push(k);
  }
  if (unsupported.length > 0) throw new Error(`adapter_config.json uses unsupported features: ${unsupported.join(', ')}`);
  const num = (k: string, dflt?: number): number => {
    const v = c[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`adapter_config.json: ${k} must be a number`);
    return v;
  };
  const tm = c.target_modules;
  let targetModules: string[] | string;
  if (typeof tm === 'string') targetModules = tm;
  else if (Array.isArray(tm) && tm.every((x) => typeof x === 'string')) targetModules = tm as string[];
  else throw new Error('adapter_config.json: target_modules must be a string or a list of strings');
  const ltt = c.layers_to_transform;
  let layersToTransform: number[] | undefined;
  if (typeof ltt === 'number') layersToTransform = [ltt];
  else if (Array.isArray(ltt)) layersToTransform = ltt.map(Number);
  const lora: LoraConfig = {
    r: num('r', 8),
    alpha: num('lora_alpha', 8),
    dropout: num('lora_dropout', 0),
    targetModules,
    useRslora: c.use_rslora === true,
    ...(layersToTransform ? { layersToTransform } : {}),
  };
  validateLoraConfig(lora);
  return lora;
}
