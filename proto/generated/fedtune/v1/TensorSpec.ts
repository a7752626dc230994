// Original file: proto/fedtune.proto

import type { DType as _fedtune_v1_DType, DType__Output as _fedtune_v1_DType__Output } from '../../fedtune/v1/DType';
import type { Long } from '@grpc/proto-loader';

export interface TensorSpec {
  'name'?: (string);
  'dtype'?: (_fedtune_v1_DType);
  'shape'?: (number | string | Long)[];
}

export interface TensorSpec__Output {
  'name': (string);
  'dtype': (_fedtune_v1_DType__Output);
  'shape': (number)[];
}
