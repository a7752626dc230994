// Original file: proto/fedtune.proto


export interface SecAggConsistencySignature {
  'from'?: (string);
  'signature'?: (Buffer | Uint8Array | string);
}

export interface SecAggConsistencySignature__Output {
  'from': (string);
  'signature': (Buffer);
}
