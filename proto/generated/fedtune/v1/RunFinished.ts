// Original file: proto/fedtune.proto


export interface RunFinished {
  'final_version'?: (number);
  'reason'?: (string);
}

export interface RunFinished__Output {
  'final_version': (number);
  'reason': (string);
}
