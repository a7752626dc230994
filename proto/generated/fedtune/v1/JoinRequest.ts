// Original file: proto/fedtune.proto


export interface JoinRequest {
  'protocol_version'?: (number);
  'client_name'?: (string);
  'backend'?: (string);
  'labels'?: ({[key: string]: string});
}

export interface JoinRequest__Output {
  'protocol_version': (number);
  'client_name': (string);
  'backend': (string);
  'labels': ({[key: string]: string});
}
