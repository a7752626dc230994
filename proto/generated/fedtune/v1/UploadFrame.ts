// Original file: proto/fedtune.proto

import type { UploadHeader as _fedtune_v1_UploadHeader, UploadHeader__Output as _fedtune_v1_UploadHeader__Output } from '../../fedtune/v1/UploadHeader';
import type { StreamTrailer as _fedtune_v1_StreamTrailer, StreamTrailer__Output as _fedtune_v1_StreamTrailer__Output } from '../../fedtune/v1/StreamTrailer';

export interface UploadFrame {
  'header'?: (_fedtune_v1_UploadHeader | null);
  'chunk'?: (Buffer | Uint8Array | string);
  'trailer'?: (_fedtune_v1_StreamTrailer | null);
  'frame'?: "header"|"chunk"|"trailer";
}

export interface UploadFrame__Output {
  'header'?: (_fedtune_v1_UploadHeader__Output | null);
  'chunk'?: (Buffer);
  'trailer'?: (_fedtune_v1_StreamTrailer__Output | null);
  'frame'?: "header"|"chunk"|"trailer";
}
