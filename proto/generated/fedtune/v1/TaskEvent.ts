// Original file: proto/fedtune.proto

import type { TrainTask as _fedtune_v1_TrainTask, TrainTask__Output as _fedtune_v1_TrainTask__Output } from '../../fedtune/v1/TrainTask';
import type { CancelTask as _fedtune_v1_CancelTask, CancelTask__Output as _fedtune_v1_CancelTask__Output } from '../../fedtune/v1/CancelTask';
import type { RunFinished as _fedtune_v1_RunFinished, RunFinished__Output as _fedtune_v1_RunFinished__Output } from '../../fedtune/v1/RunFinished';
import type { SecAggRoster as _fedtune_v1_SecAggRoster, SecAggRoster__Output as _fedtune_v1_SecAggRoster__Output } from '../../fedtune/v1/SecAggRoster';
import type { SecAggRoutedShares as _fedtune_v1_SecAggRoutedShares, SecAggRoutedShares__Output as _fedtune_v1_SecAggRoutedShares__Output } from '../../fedtune/v1/SecAggRoutedShares';
import type { SecAggUnmaskRequest as _fedtune_v1_SecAggUnmaskRequest, SecAggUnmaskRequest__Output as _fedtune_v1_SecAggUnmaskRequest__Output } from '../../fedtune/v1/SecAggUnmaskRequest';
import type { SecAggConsistencyCheck as _fedtune_v1_SecAggConsistencyCheck, SecAggConsistencyCheck__Output as _fedtune_v1_SecAggConsistencyCheck__Output } from '../../fedtune/v1/SecAggConsistencyCheck';
import type { EvaluateTask as _fedtune_v1_EvaluateTask, EvaluateTask__Output as _fedtune_v1_EvaluateTask__Output } from '../../fedtune/v1/EvaluateTask';

export interface TaskEvent {
  'train'?: (_fedtune_v1_TrainTask | null);
  'cancel'?: (_fedtune_v1_CancelTask | null);
  'finished'?: (_fedtune_v1_RunFinished | null);
  'secagg_roster'?: (_fedtune_v1_SecAggRoster | null);
  'secagg_shares'?: (_fedtune_v1_SecAggRoutedShares | null);
  'secagg_unmask'?: (_fedtune_v1_SecAggUnmaskRequest | null);
  'secagg_consistency'?: (_fedtune_v1_SecAggConsistencyCheck | null);
  'evaluate'?: (_fedtune_v1_EvaluateTask | null);
  'event'?: "train"|"cancel"|"finished"|"secagg_roster"|"secagg_shares"|"secagg_unmask"|"secagg_consistency"|"evaluate";
}

export interface TaskEvent__Output {
  'train'?: (_fedtune_v1_TrainTask__Output | null);
  'cancel'?: (_fedtune_v1_CancelTask__Output | null);
  'finished'?: (_fedtune_v1_RunFinished__Output | null);
  'secagg_roster'?: (_fedtune_v1_SecAggRoster__Output | null);
  'secagg_shares'?: (_fedtune_v1_SecAggRoutedShares__Output | null);
  'secagg_unmask'?: (_fedtune_v1_SecAggUnmaskRequest__Output | null);
  'secagg_consistency'?: (_fedtune_v1_SecAggConsistencyCheck__Output | null);
  'evaluate'?: (_fedtune_v1_EvaluateTask__Output | null);
  'event'?: "train"|"cancel"|"finished"|"secagg_roster"|"secagg_shares"|"secagg_unmask"|"secagg_consistency"|"evaluate";
}
