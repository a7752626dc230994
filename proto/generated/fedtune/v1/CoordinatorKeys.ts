// Original file: proto/fedtune.proto


export interface CoordinatorKeys {
  'key_id'?: (string);
  'sign_public_key'?: (Buffer | Uint8Array | string);
  'box_public_key'?: (Buffer | Uint8Array | string);
}

export interface CoordinatorKeys__Output {
  'key_id': (string);
  'sign_public_key': (Buffer);
  'box_public_key': (Buffer);
}
