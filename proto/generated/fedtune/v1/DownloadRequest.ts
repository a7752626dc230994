// Original file: proto/fedtune.proto

import type { Long } from '@grpc/proto-loader';

export interface DownloadRequest {
  'session_token'?: (string);
  'version'?: (number);
  'evaluation_task_id'?: (string);
  'control_variate'?: (boolean);
  'header_only'?: (boolean);
  'range_offset'?: (number | string | Long);
  'range_length'?: (number | string | Long);
}

export interface DownloadRequest__Output {
  'session_token': (string);
  'version': (number);
  'evaluation_task_id': (string);
  'control_variate': (boolean);
  'header_only': (boolean);
  'range_offset': (number);
  'range_length': (number);
}
