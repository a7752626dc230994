// Original file: proto/fedtune.proto


export interface SecAggConsistencyCheck {
  'task_id'?: (string);
  'survivors'?: (string)[];
  'dropped'?: (string)[];
}

export interface SecAggConsistencyCheck__Output {
  'task_id': (string);
  'survivors': (string)[];
  'dropped': (string)[];
}
