// Original file: proto/fedtune.proto

import type { TensorHeader as _fedtune_v1_TensorHeader, TensorHeader__Output as _fedtune_v1_TensorHeader__Output } from '../../fedtune/v1/TensorHeader';
import type { StreamTrailer as _fedtune_v1_StreamTrailer, StreamTrailer__Output as _fedtune_v1_StreamTrailer__Output } from '../../fedtune/v1/StreamTrailer';

export interface TensorFrame {
  'header'?: (_fedtune_v1_TensorHeader | null);
  'chunk'?: (Buffer | Uint8Array | string);
  'trailer'?: (_fedtune_v1_StreamTrailer | null);
  'frame'?: "header"|"chunk"|"trailer";
}

export interface TensorFrame__Output {
  'header'?: (_fedtune_v1_TensorHeader__Output | null);
  'chunk'?: (Buffer);
  'trailer'?: (_fedtune_v1_StreamTrailer__Output | null);
  'frame'?: "header"|"chunk"|"trailer";
}
