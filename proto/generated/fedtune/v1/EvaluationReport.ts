// Original file: proto/fedtune.proto

import type { Long } from '@grpc/proto-loader';

export interface EvaluationReport {
  'session_token'?: (string);
  'task_id'?: (string);
  'version'?: (number);
  'num_examples'?: (number | string | Long);
  'loss'?: (number | string);
  'accuracy'?: (number | string);
  'has_accuracy'?: (boolean);
}

export interface EvaluationReport__Output {
  'session_token': (string);
  'task_id': (string);
  'version': (number);
  'num_examples': (number);
  'loss': (number);
  'accuracy': (number);
  'has_accuracy': (boolean);
}
