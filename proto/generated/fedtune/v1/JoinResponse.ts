// Original file: proto/fedtune.proto


export interface JoinResponse {
  'client_id'?: (string);
  'session_token'?: (string);
  'run_id'?: (string);
  'protocol_version'?: (number);
  'base_model_sha256'?: (string);
}

export interface JoinResponse__Output {
  'client_id': (string);
  'session_token': (string);
  'run_id': (string);
  'protocol_version': (number);
  'base_model_sha256': (string);
}
