// Original file: proto/fedtune.proto


export interface CancelTask {
  'task_id'?: (string);
  'reason'?: (string);
}

export interface CancelTask__Output {
  'task_id': (string);
  'reason': (string);
}
