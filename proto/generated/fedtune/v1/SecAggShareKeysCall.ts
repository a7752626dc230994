// Original file: proto/fedtune.proto

import type { SecAggShareKeys as _fedtune_v1_SecAggShareKeys, SecAggShareKeys__Output as _fedtune_v1_SecAggShareKeys__Output } from '../../fedtune/v1/SecAggShareKeys';

export interface SecAggShareKeysCall {
  'session_token'?: (string);
  'task_id'?: (string);
  'round'?: (number);
  'share_keys'?: (_fedtune_v1_SecAggShareKeys | null);
}

export interface SecAggShareKeysCall__Output {
  'session_token': (string);
  'task_id': (string);
  'round': (number);
  'share_keys': (_fedtune_v1_SecAggShareKeys__Output | null);
}
