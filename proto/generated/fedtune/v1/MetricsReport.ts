// Original file: proto/fedtune.proto

import type { Long } from '@grpc/proto-loader';

export interface MetricsReport {
  'session_token'?: (string);
  'task_id'?: (string);
  'round'?: (number);
  'num_examples'?: (number | string | Long);
  'backend'?: (string);
  'metrics'?: ({[key: string]: number | string});
  'lora_rank'?: (number);
}

export interface MetricsReport__Output {
  'session_token': (string);
  'task_id': (string);
  'round': (number);
  'num_examples': (number);
  'backend': (string);
  'metrics': ({[key: string]: number});
  'lora_rank': (number);
}
