// Original file: proto/fedtune.proto

import type { SecAggConsistencySignature as _fedtune_v1_SecAggConsistencySignature, SecAggConsistencySignature__Output as _fedtune_v1_SecAggConsistencySignature__Output } from '../../fedtune/v1/SecAggConsistencySignature';

export interface SecAggConsistencyCall {
  'session_token'?: (string);
  'task_id'?: (string);
  'round'?: (number);
  'signature'?: (_fedtune_v1_SecAggConsistencySignature | null);
}

export interface SecAggConsistencyCall__Output {
  'session_token': (string);
  'task_id': (string);
  'round': (number);
  'signature': (_fedtune_v1_SecAggConsistencySignature__Output | null);
}
