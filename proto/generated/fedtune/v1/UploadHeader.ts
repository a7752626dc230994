// Original file: proto/fedtune.proto

import type { TensorHeader as _fedtune_v1_TensorHeader, TensorHeader__Output as _fedtune_v1_TensorHeader__Output } from '../../fedtune/v1/TensorHeader';
import type { SealedEnvelope as _fedtune_v1_SealedEnvelope, SealedEnvelope__Output as _fedtune_v1_SealedEnvelope__Output } from '../../fedtune/v1/SealedEnvelope';
import type { Long } from '@grpc/proto-loader';

export interface UploadHeader {
  'protocol_version'?: (number);
  'session_token'?: (string);
  'task_id'?: (string);
  'round'?: (number);
  'base_version'?: (number);
  'num_examples'?: (number | string | Long);
  'tensors'?: (_fedtune_v1_TensorHeader | null);
  'sealed'?: (_fedtune_v1_SealedEnvelope | null);
}

export interface UploadHeader__Output {
  'protocol_version': (number);
  'session_token': (string);
  'task_id': (string);
  'round': (number);
  'base_version': (number);
  'num_examples': (number);
  'tensors': (_fedtune_v1_TensorHeader__Output | null);
  'sealed': (_fedtune_v1_SealedEnvelope__Output | null);
}
