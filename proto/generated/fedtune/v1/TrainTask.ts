// Original file: proto/fedtune.proto

import type { TrainingConfig as _fedtune_v1_TrainingConfig, TrainingConfig__Output as _fedtune_v1_TrainingConfig__Output } from '../../fedtune/v1/TrainingConfig';
import type { SecAggSettings as _fedtune_v1_SecAggSettings, SecAggSettings__Output as _fedtune_v1_SecAggSettings__Output } from '../../fedtune/v1/SecAggSettings';
import type { Long } from '@grpc/proto-loader';

export interface TrainTask {
  'task_id'?: (string);
  'round'?: (number);
  'attempt'?: (number);
  'base_version'?: (number);
  'base_manifest_sha256'?: (string);
  'deadline_unix_ms'?: (number | string | Long);
  'config'?: (_fedtune_v1_TrainingConfig | null);
  'seed'?: (number | string | Long);
  'secagg'?: (_fedtune_v1_SecAggSettings | null);
}

export interface TrainTask__Output {
  'task_id': (string);
  'round': (number);
  'attempt': (number);
  'base_version': (number);
  'base_manifest_sha256': (string);
  'deadline_unix_ms': (number);
  'config': (_fedtune_v1_TrainingConfig__Output | null);
  'seed': (number);
  'secagg': (_fedtune_v1_SecAggSettings__Output | null);
}
