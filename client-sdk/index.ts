// fedtune/client-sdk: join a federation from a data-owning site.
// The public API: what a site's program needs (client, identity, TLS, a Trainer, and the LoRA SFT trainer with
// its model, tokenizer and data helpers). The upload sealing, the SecAgg flow and the demo are internal;
// test/public-api.test.ts compiles a program against this entry point through the package's exports.
export { FederationClient, type FederationClientOptions, type RunSummary, type TaskDone, type TaskInfo, type ClientEvents, type ClientLogger } from './client';
export { loadOrCreateIdentity, identityFromSeed, identityFromSecretKey, type ClientIdentity } from './identity';
export type { Trainer, TrainingPlan, TrainOutcome } from './trainer';
export { tlsCredentials, type TlsClientOptions } from './tls';
export { DEFAULT_BACKOFF, type BackoffOptions } from './backoff';
export { LoraSftTrainer, createLoraSftTrainer, type LoraSftTrainerOptions, type SftData } from './sft/lora-trainer';
export { fileControlVariates, memoryControlVariates, type ControlVariateStore } from './scaffold-store';
export { evaluateAdapter } from './sft/evaluate';
export type { SftExample } from './sft/types';
export { selectBackend, selectedBackend, type BackendName } from './model/backend';
export { Gpt2Model } from './model/gpt2';
export { loadGpt2Dir } from './model/load';
export { initLoraAdapter, peftAdapterConfig, type LoraConfig } from '../proto/model/lora-layout';
export { ReducedGpt2Tokenizer } from './text/tokenizer';
export { encodeExamples } from './data/encode';
export { PROTOCOL_VERSION } from '../proto/constants';
export type { NamedTensor, TensorList } from '../proto/tensors';
// Bring your own model and data: the Llama family (llama, qwen2, mistral, qwen3, gemma3_text) beside GPT-2, HF
// tokenizers and chat templates, JSON Lines data, LoRA settings read off the coordinator's adapter.
export { LlamaModel } from './model/llama';
export { loadModelDir, type CausalLm, type LoadedModel } from './model/load';
export { savePeftAdapterDir, loadPeftAdapterDir } from './model/lora-io';
export { parseModelConfig, type ModelConfig } from '../proto/model/model-config';
export { HfTokenizer, type ChatMessage, type ChatRenderOptions, type JsonValue, type ToolCall } from './text/hf-tokenizer';
export { readJsonlFile, parseJsonl, DataFileError, type JsonlRow } from './data/jsonl';
export { loadJsonlSftData, encodeRow, encodeRowExamples, splitIndices, type JsonlSftData, type JsonlSftOptions } from './data/sft-jsonl';
export { TaskLoraTrainer, loraConfigFromTask, LoraMismatchError, type SiteLoraOptions } from './sft/task-lora';
export { runOwnDataSite, type OwnDataSiteOptions } from './site/own-data';
