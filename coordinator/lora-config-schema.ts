// The `lora` section of the coordinator's configuration schema, spread into config-schema.ts: the adapter every
// site trains (rank, scaling, dropout, target modules, sent in the task plan by train-plan.ts) and how the sites'
// LoRA updates combine (lora-aggregation.ts).
import { LORA_AGGREGATIONS } from '../proto/model/lora-aggregation';

export const loraSchema = {
  lora: {
    r: { doc: 'LoRA rank.', format: 'positive-int', default: 8, env: 'FEDTUNE_LORA_R', arg: 'lora.r' },
    alpha: { doc: 'LoRA alpha (scaling alpha / r).', format: 'positive-number', default: 16, env: 'FEDTUNE_LORA_ALPHA', arg: 'lora.alpha' },
    dropout: {
      doc: 'Dropout on the LoRA branch input during training; sent to every site in the task plan (default 0: the default recipe was measured without it).',
      format: 'probability',
      default: 0,
      env: 'FEDTUNE_LORA_DROPOUT',
      arg: 'lora.dropout',
    },
    targetModules: {
      doc: 'Modules to adapt: GPT-2 c_attn, c_proj (attention and MLP), c_fc; Llama family q_proj … down_proj.',
      format: 'lora-targets',
      default: ['c_attn', 'c_proj', 'c_fc'] as readonly string[],
      env: 'FEDTUNE_LORA_TARGET_MODULES',
      arg: 'lora.targetModules',
    },
    aggregation: {
      doc: "How LoRA updates combine: 'fedit' (A and B averaged separately), 'ffa' (FFA-LoRA: A frozen at its seeded init, only B trained, sent and averaged; the average of the sites' products is then exact), 'flora' (FLoRA stacking: each round every site trains a fresh LoRA of its own rank on top of the version it is sent and the coordinator stacks the factors, so the version's product gains exactly the weighted mean of the sites' products; a version is a PEFT adapter whose rank is the sum of all rounds' ranks, or past the largest min(d_in, d_out) of a module the cumulative delta in dense factored form at that rank; needs strategy.name 'fedavg' and strategy.ema 0, never secagg or privacy), or 'auto': 'ffa' under secagg.enabled or privacy.enabled, else 'fedit'.",
      format: ['auto', ...LORA_AGGREGATIONS],
      default: 'auto',
      env: 'FEDTUNE_LORA_AGGREGATION',
      arg: 'lora.aggregation',
    },
  },
} as const;
