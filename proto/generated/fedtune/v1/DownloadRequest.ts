// Original file: proto/fedtune.proto


export interface DownloadRequest {
  'session_token'?: (string);
  'version'?: (number);
  'evaluation_task_id'?: (string);
  'control_variate'?: (boolean);
}

export interface DownloadRequest__Output {
  'session_token': (string);
  'version': (number);
  'evaluation_task_id': (string);
  'control_variate': (boolean);
}
