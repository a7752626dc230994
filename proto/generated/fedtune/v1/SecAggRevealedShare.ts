// Original file: proto/fedtune.proto


export interface SecAggRevealedShare {
  'of'?: (string);
  'share'?: (Buffer | Uint8Array | string);
}

export interface SecAggRevealedShare__Output {
  'of': (string);
  'share': (Buffer);
}
