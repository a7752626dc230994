// Original file: proto/fedtune.proto


export interface SecAggSealedShares {
  'to'?: (string);
  'ciphertext'?: (Buffer | Uint8Array | string);
  'b_commitment'?: (Buffer | Uint8Array | string);
  'sk_commitment'?: (Buffer | Uint8Array | string);
}

export interface SecAggSealedShares__Output {
  'to': (string);
  'ciphertext': (Buffer);
  'b_commitment': (Buffer);
  'sk_commitment': (Buffer);
}
