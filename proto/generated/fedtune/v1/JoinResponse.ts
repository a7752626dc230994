// Original file: proto/fedtune.proto

import type { CoordinatorKeys as _fedtune_v1_CoordinatorKeys, CoordinatorKeys__Output as _fedtune_v1_CoordinatorKeys__Output } from '../../fedtune/v1/CoordinatorKeys';

export interface JoinResponse {
  'client_id'?: (string);
  'session_token'?: (string);
  'run_id'?: (string);
  'protocol_version'?: (number);
  'base_model_sha256'?: (string);
  'coordinator'?: (_fedtune_v1_CoordinatorKeys | null);
}

export interface JoinResponse__Output {
  'client_id': (string);
  'session_token': (string);
  'run_id': (string);
  'protocol_version': (number);
  'base_model_sha256': (string);
  'coordinator': (_fedtune_v1_CoordinatorKeys__Output | null);
}
