// Original file: proto/fedtune.proto

import type { TrainTask as _fedtune_v1_TrainTask, TrainTask__Output as _fedtune_v1_TrainTask__Output } from '../../fedtune/v1/TrainTask';
import type { CancelTask as _fedtune_v1_CancelTask, CancelTask__Output as _fedtune_v1_CancelTask__Output } from '../../fedtune/v1/CancelTask';
import type { RunFinished as _fedtune_v1_RunFinished, RunFinished__Output as _fedtune_v1_RunFinished__Output } from '../../fedtune/v1/RunFinished';

export interface TaskEvent {
  'train'?: (_fedtune_v1_TrainTask | null);
  'cancel'?: (_fedtune_v1_CancelTask | null);
  'finished'?: (_fedtune_v1_RunFinished | null);
  'event'?: "train"|"cancel"|"finished";
}

export interface TaskEvent__Output {
  'train'?: (_fedtune_v1_TrainTask__Output | null);
  'cancel'?: (_fedtune_v1_CancelTask__Output | null);
  'finished'?: (_fedtune_v1_RunFinished__Output | null);
  'event'?: "train"|"cancel"|"finished";
}
