// Original file: proto/fedtune.proto

import type { CoordinatorKeys as _fedtune_v1_CoordinatorKeys, CoordinatorKeys__Output as _fedtune_v1_CoordinatorKeys__Output } from '../../fedtune/v1/CoordinatorKeys';
import type { Long } from '@grpc/proto-loader';

export interface HelloResponse {
  'protocol_version'?: (number);
  'run_id'?: (string);
  'challenge'?: (Buffer | Uint8Array | string);
  'challenge_expires_unix_ms'?: (number | string | Long);
  'coordinator'?: (_fedtune_v1_CoordinatorKeys | null);
}

export interface HelloResponse__Output {
  'protocol_version': (number);
  'run_id': (string);
  'challenge': (Buffer);
  'challenge_expires_unix_ms': (number);
  'coordinator': (_fedtune_v1_CoordinatorKeys__Output | null);
}
