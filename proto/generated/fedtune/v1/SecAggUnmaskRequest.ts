// Original file: proto/fedtune.proto

import type { SecAggConsistencySignature as _fedtune_v1_SecAggConsistencySignature, SecAggConsistencySignature__Output as _fedtune_v1_SecAggConsistencySignature__Output } from '../../fedtune/v1/SecAggConsistencySignature';

export interface SecAggUnmaskRequest {
  'task_id'?: (string);
  'survivors'?: (string)[];
  'dropped'?: (string)[];
  'signatures'?: (_fedtune_v1_SecAggConsistencySignature)[];
}

export interface SecAggUnmaskRequest__Output {
  'task_id': (string);
  'survivors': (string)[];
  'dropped': (string)[];
  'signatures': (_fedtune_v1_SecAggConsistencySignature__Output)[];
}
