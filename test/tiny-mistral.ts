// A tiny random Mistral whose sliding window (6) is shorter than the tests' sequences, for the engine's window
// checks (test/engine-window.test.ts, test/gpu-engine-window.ts, test/gpu-engine-llama.ts): GQA 4:2, head_dim 32 (a
// multiple of 32, so the vec4 attention kernels serve it), hidden 64.
export const TINY_MISTRAL_JSON = {
  model_type: 'mistral',
  vocab_size: 300,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 32,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  sliding_window: 6 as number | null,
};
