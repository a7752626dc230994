// Original file: proto/fedtune.proto


export interface StreamTrailer {
  'chunk_count'?: (number);
  'sha256'?: (Buffer | Uint8Array | string);
}

export interface StreamTrailer__Output {
  'chunk_count': (number);
  'sha256': (Buffer);
}
