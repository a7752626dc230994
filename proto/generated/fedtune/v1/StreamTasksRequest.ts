// Original file: proto/fedtune.proto


export interface StreamTasksRequest {
  'session_token'?: (string);
}

export interface StreamTasksRequest__Output {
  'session_token': (string);
}
