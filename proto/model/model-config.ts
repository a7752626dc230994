// The model families fedtune runs, told apart by config.json's model_type: GPT-2, and the Llama family
// (llama, qwen2, mistral, qwen3, gemma3_text). Both sides need this: the coordinator to build the initial adapter
// and the PEFT adapter_config for its base, the SDK to load the model.
import { parseGpt2Config, projectionShape, BLOCK_PROJECTIONS, type Gpt2Config } from './gpt2-config';
import { LLAMA_MODEL_TYPES, LLAMA_PROJECTIONS, llamaProjectionShape, parseLlamaConfig, type LlamaConfig } from './llama-config';

export type ModelConfig = Gpt2Config | LlamaConfig;

export function isLlamaConfig(c: ModelConfig): c is LlamaConfig {
  return (c as LlamaConfig).family === 'llama';
}

/** Parses config.json of any supported family; an unsupported model_type is refused by name. */
export function parseModelConfig(json: unknown): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('config.json: not an object');
  const t = (json as Record<string, unknown>).model_type;
  if (t === undefined || t === 'gpt2') return parseGpt2Config(json);
  if (typeof t === 'string' && (LLAMA_MODEL_TYPES as readonly string[]).includes(t)) return parseLlamaConfig(json);
  throw new Error(`config.json: model_type '${String(t)}' is not supported (supported: gpt2, ${LLAMA_MODEL_TYPES.join(', ')})`);
}

/** Module paths of every LoRA-able projection, in layer order (`h.0.attn.c_attn` or `layers.0.self_attn.q_proj`). */
export function projectionCandidates(cfg: ModelConfig, layers?: readonly number[]): string[] {
  const out: string[] = [];
  const llama = isLlamaConfig(cfg);
  for (let i = 0; i < cfg.nLayer; i++) {
    if (layers && !layers.includes(i)) continue;
    for (const p of llama ? LLAMA_PROJECTIONS : BLOCK_PROJECTIONS) out.push(llama ? `layers.${i}.${p}` : `h.${i}.${p}`);
  }
  return out;
}

/** The module's full name inside the HF model (what PEFT's target_modules match): `model.layers.0.mlp.up_proj`. */
export function moduleFullName(path: string): string {
  return (path.startsWith('layers.') ? 'model.' : 'transformer.') + path;
}

/** [in, out] of a projection of either family. */
export function projectionInOut(cfg: ModelConfig, path: string): [number, number] {
  return isLlamaConfig(cfg) ? llamaProjectionShape(cfg, path) : projectionShape(cfg, path);
}

/** The family's name in messages: 'GPT-2', 'llama', 'qwen2', 'mistral', 'qwen3', 'gemma3_text'. */
export function familyLabel(cfg: ModelConfig): string {
  return isLlamaConfig(cfg) ? cfg.modelType : 'GPT-2';
}

/** Projection names a target may use, for error messages. */
export function projectionNames(cfg: ModelConfig): string {
  return isLlamaConfig(cfg) ? 'q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj' : 'c_attn, c_proj, c_fc';
}

/** PEFT's fan_in_fan_out: GPT-2's Conv1D stores [in, out]; the Llama family's nn.Linear stores [out, in]. */
export function fanInFanOut(cfg: ModelConfig): boolean {
  return !isLlamaConfig(cfg);
}
