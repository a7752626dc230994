// Original file: proto/fedtune.proto

import type { TensorSpec as _fedtune_v1_TensorSpec, TensorSpec__Output as _fedtune_v1_TensorSpec__Output } from '../../fedtune/v1/TensorSpec';
import type { Long } from '@grpc/proto-loader';

export interface TensorHeader {
  'protocol_version'?: (number);
  'tensors'?: (_fedtune_v1_TensorSpec)[];
  'total_bytes'?: (number | string | Long);
  'chunk_bytes'?: (number);
  'piece_bytes'?: (number);
  'piece_sha256'?: (Buffer | Uint8Array | string)[];
  'max_range_calls'?: (number);
}

export interface TensorHeader__Output {
  'protocol_version': (number);
  'tensors': (_fedtune_v1_TensorSpec__Output)[];
  'total_bytes': (number);
  'chunk_bytes': (number);
  'piece_bytes': (number);
  'piece_sha256': (Buffer)[];
  'max_range_calls': (number);
}
