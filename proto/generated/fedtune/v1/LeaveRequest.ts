// Original file: proto/fedtune.proto


export interface LeaveRequest {
  'session_token'?: (string);
  'reason'?: (string);
}

export interface LeaveRequest__Output {
  'session_token': (string);
  'reason': (string);
}
