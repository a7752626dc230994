// What the checkpoint store's tests commit: one small version whose adapter values encode its round, so a test can
// tell versions apart by their bytes (checkpoint-commit.test.ts, checkpoint-store-mutants.test.ts).
import type { VersionInput } from '../coordinator/checkpoints/types';
import type { NamedTensor } from '../proto/tensors';

export function commitInput(round: number, runId: string, serverState?: NamedTensor[]): VersionInput {
  return {
    adapter: [{ name: 'm.lora_A.weight', dtype: 'float32', shape: [2], data: Float32Array.from([round, -round]) }],
    adapterConfig: { peft_type: 'LORA' },
    serverState,
    manifest: {
      runId,
      round,
      attempt: 1,
      strategy: 'fedavgm',
      participants: [],
      metrics: {},
      config: {},
      seeds: {},
      baseModel: { name: 't', sha256: '0'.repeat(64) },
      protocolVersion: 1,
    },
  };
}
