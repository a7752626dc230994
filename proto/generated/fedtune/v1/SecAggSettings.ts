// Original file: proto/fedtune.proto


export interface SecAggSettings {
  'round_tag'?: (string);
  'selected'?: (string)[];
  'threshold'?: (number);
  'graph'?: (string);
  'k'?: (number);
  'clip_norm'?: (number | string);
  'weight_cap'?: (number);
  'max_clients'?: (number);
  'include'?: (string)[];
  'vector_length'?: (number);
  'noise_multiplier'?: (number | string);
  'clip_count_noise'?: (number | string);
}

export interface SecAggSettings__Output {
  'round_tag': (string);
  'selected': (string)[];
  'threshold': (number);
  'graph': (string);
  'k': (number);
  'clip_norm': (number);
  'weight_cap': (number);
  'max_clients': (number);
  'include': (string)[];
  'vector_length': (number);
  'noise_multiplier': (number);
  'clip_count_noise': (number);
}
