// Original file: proto/fedtune.proto


export interface SecAggUnmaskRequest {
  'task_id'?: (string);
  'survivors'?: (string)[];
  'dropped'?: (string)[];
}

export interface SecAggUnmaskRequest__Output {
  'task_id': (string);
  'survivors': (string)[];
  'dropped': (string)[];
}
