// Original file: proto/fedtune.proto


export interface HelloRequest {
  'protocol_version'?: (number);
}

export interface HelloRequest__Output {
  'protocol_version': (number);
}
