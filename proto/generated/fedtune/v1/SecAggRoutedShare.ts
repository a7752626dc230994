// Original file: proto/fedtune.proto


export interface SecAggRoutedShare {
  'from'?: (string);
  'ciphertext'?: (Buffer | Uint8Array | string);
  'b_commitment'?: (Buffer | Uint8Array | string);
  'sk_commitment'?: (Buffer | Uint8Array | string);
}

export interface SecAggRoutedShare__Output {
  'from': (string);
  'ciphertext': (Buffer);
  'b_commitment': (Buffer);
  'sk_commitment': (Buffer);
}
