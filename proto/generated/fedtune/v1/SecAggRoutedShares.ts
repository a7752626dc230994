// Original file: proto/fedtune.proto

import type { SecAggRoutedShare as _fedtune_v1_SecAggRoutedShare, SecAggRoutedShare__Output as _fedtune_v1_SecAggRoutedShare__Output } from '../../fedtune/v1/SecAggRoutedShare';

export interface SecAggRoutedShares {
  'task_id'?: (string);
  'u2'?: (string)[];
  'shares'?: (_fedtune_v1_SecAggRoutedShare)[];
}

export interface SecAggRoutedShares__Output {
  'task_id': (string);
  'u2': (string)[];
  'shares': (_fedtune_v1_SecAggRoutedShare__Output)[];
}
