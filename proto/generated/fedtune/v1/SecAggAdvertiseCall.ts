// Original file: proto/fedtune.proto

import type { SecAggAdvertisement as _fedtune_v1_SecAggAdvertisement, SecAggAdvertisement__Output as _fedtune_v1_SecAggAdvertisement__Output } from '../../fedtune/v1/SecAggAdvertisement';

export interface SecAggAdvertiseCall {
  'session_token'?: (string);
  'task_id'?: (string);
  'round'?: (number);
  'advertisement'?: (_fedtune_v1_SecAggAdvertisement | null);
}

export interface SecAggAdvertiseCall__Output {
  'session_token': (string);
  'task_id': (string);
  'round': (number);
  'advertisement': (_fedtune_v1_SecAggAdvertisement__Output | null);
}
