// Original file: proto/fedtune.proto

import type { SecAggUnmaskResponse as _fedtune_v1_SecAggUnmaskResponse, SecAggUnmaskResponse__Output as _fedtune_v1_SecAggUnmaskResponse__Output } from '../../fedtune/v1/SecAggUnmaskResponse';

export interface SecAggUnmaskCall {
  'session_token'?: (string);
  'task_id'?: (string);
  'round'?: (number);
  'response'?: (_fedtune_v1_SecAggUnmaskResponse | null);
}

export interface SecAggUnmaskCall__Output {
  'session_token': (string);
  'task_id': (string);
  'round': (number);
  'response': (_fedtune_v1_SecAggUnmaskResponse__Output | null);
}
