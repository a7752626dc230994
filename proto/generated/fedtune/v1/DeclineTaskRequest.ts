// Original file: proto/fedtune.proto

import type { DeclineReason as _fedtune_v1_DeclineReason, DeclineReason__Output as _fedtune_v1_DeclineReason__Output } from '../../fedtune/v1/DeclineReason';

export interface DeclineTaskRequest {
  'session_token'?: (string);
  'task_id'?: (string);
  'round'?: (number);
  'reason'?: (_fedtune_v1_DeclineReason);
}

export interface DeclineTaskRequest__Output {
  'session_token': (string);
  'task_id': (string);
  'round': (number);
  'reason': (_fedtune_v1_DeclineReason__Output);
}
