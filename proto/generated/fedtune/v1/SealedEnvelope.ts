// Original file: proto/fedtune.proto


export interface SealedEnvelope {
  'run_id'?: (string);
  'client_id'?: (string);
  'attempt'?: (number);
  'base_manifest_sha256'?: (string);
  'coordinator_key_id'?: (string);
  'ephemeral_public_key'?: (Buffer | Uint8Array | string);
  'nonce_prefix'?: (Buffer | Uint8Array | string);
  'chunk_count'?: (number);
  'ciphertext_sha256'?: (Buffer | Uint8Array | string);
  'signature'?: (Buffer | Uint8Array | string);
}

export interface SealedEnvelope__Output {
  'run_id': (string);
  'client_id': (string);
  'attempt': (number);
  'base_manifest_sha256': (string);
  'coordinator_key_id': (string);
  'ephemeral_public_key': (Buffer);
  'nonce_prefix': (Buffer);
  'chunk_count': (number);
  'ciphertext_sha256': (Buffer);
  'signature': (Buffer);
}
