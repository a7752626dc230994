// Original file: proto/fedtune.proto

import type { Long } from '@grpc/proto-loader';

export interface EvaluateTask {
  'task_id'?: (string);
  'round'?: (number);
  'version'?: (number);
  'adapter_sha256'?: (string);
  'deadline_unix_ms'?: (number | string | Long);
  'lora_stack'?: (boolean);
}

export interface EvaluateTask__Output {
  'task_id': (string);
  'round': (number);
  'version': (number);
  'adapter_sha256': (string);
  'deadline_unix_ms': (number);
  'lora_stack': (boolean);
}
