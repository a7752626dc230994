// Original file: proto/fedtune.proto


export interface JoinRequest {
  'protocol_version'?: (number);
  'client_name'?: (string);
  'backend'?: (string);
  'labels'?: ({[key: string]: string});
  'public_key'?: (Buffer | Uint8Array | string);
  'challenge'?: (Buffer | Uint8Array | string);
  'signature'?: (Buffer | Uint8Array | string);
  'join_token'?: (string);
  'coordinator_key_id'?: (string);
}

export interface JoinRequest__Output {
  'protocol_version': (number);
  'client_name': (string);
  'backend': (string);
  'labels': ({[key: string]: string});
  'public_key': (Buffer);
  'challenge': (Buffer);
  'signature': (Buffer);
  'join_token': (string);
  'coordinator_key_id': (string);
}
