import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { CancelTask as _fedtune_v1_CancelTask, CancelTask__Output as _fedtune_v1_CancelTask__Output } from './fedtune/v1/CancelTask';
import type { CoordinatorKeys as _fedtune_v1_CoordinatorKeys, CoordinatorKeys__Output as _fedtune_v1_CoordinatorKeys__Output } from './fedtune/v1/CoordinatorKeys';
import type { DeclineTaskAck as _fedtune_v1_DeclineTaskAck, DeclineTaskAck__Output as _fedtune_v1_DeclineTaskAck__Output } from './fedtune/v1/DeclineTaskAck';
import type { DeclineTaskRequest as _fedtune_v1_DeclineTaskRequest, DeclineTaskRequest__Output as _fedtune_v1_DeclineTaskRequest__Output } from './fedtune/v1/DeclineTaskRequest';
import type { DownloadRequest as _fedtune_v1_DownloadRequest, DownloadRequest__Output as _fedtune_v1_DownloadRequest__Output } from './fedtune/v1/DownloadRequest';
import type { EvaluateTask as _fedtune_v1_EvaluateTask, EvaluateTask__Output as _fedtune_v1_EvaluateTask__Output } from './fedtune/v1/EvaluateTask';
import type { EvaluationAck as _fedtune_v1_EvaluationAck, EvaluationAck__Output as _fedtune_v1_EvaluationAck__Output } from './fedtune/v1/EvaluationAck';
import type { EvaluationReport as _fedtune_v1_EvaluationReport, EvaluationReport__Output as _fedtune_v1_EvaluationReport__Output } from './fedtune/v1/EvaluationReport';
import type { FederationClient as _fedtune_v1_FederationClient, FederationDefinition as _fedtune_v1_FederationDefinition } from './fedtune/v1/Federation';
import type { HelloRequest as _fedtune_v1_HelloRequest, HelloRequest__Output as _fedtune_v1_HelloRequest__Output } from './fedtune/v1/HelloRequest';
import type { HelloResponse as _fedtune_v1_HelloResponse, HelloResponse__Output as _fedtune_v1_HelloResponse__Output } from './fedtune/v1/HelloResponse';
import type { JoinRequest as _fedtune_v1_JoinRequest, JoinRequest__Output as _fedtune_v1_JoinRequest__Output } from './fedtune/v1/JoinRequest';
import type { JoinResponse as _fedtune_v1_JoinResponse, JoinResponse__Output as _fedtune_v1_JoinResponse__Output } from './fedtune/v1/JoinResponse';
import type { LeaveRequest as _fedtune_v1_LeaveRequest, LeaveRequest__Output as _fedtune_v1_LeaveRequest__Output } from './fedtune/v1/LeaveRequest';
import type { LeaveResponse as _fedtune_v1_LeaveResponse, LeaveResponse__Output as _fedtune_v1_LeaveResponse__Output } from './fedtune/v1/LeaveResponse';
import type { MetricsAck as _fedtune_v1_MetricsAck, MetricsAck__Output as _fedtune_v1_MetricsAck__Output } from './fedtune/v1/MetricsAck';
import type { MetricsReport as _fedtune_v1_MetricsReport, MetricsReport__Output as _fedtune_v1_MetricsReport__Output } from './fedtune/v1/MetricsReport';
import type { RunFinished as _fedtune_v1_RunFinished, RunFinished__Output as _fedtune_v1_RunFinished__Output } from './fedtune/v1/RunFinished';
import type { SealedEnvelope as _fedtune_v1_SealedEnvelope, SealedEnvelope__Output as _fedtune_v1_SealedEnvelope__Output } from './fedtune/v1/SealedEnvelope';
import type { SecAggAck as _fedtune_v1_SecAggAck, SecAggAck__Output as _fedtune_v1_SecAggAck__Output } from './fedtune/v1/SecAggAck';
import type { SecAggAdvertiseCall as _fedtune_v1_SecAggAdvertiseCall, SecAggAdvertiseCall__Output as _fedtune_v1_SecAggAdvertiseCall__Output } from './fedtune/v1/SecAggAdvertiseCall';
import type { SecAggAdvertisement as _fedtune_v1_SecAggAdvertisement, SecAggAdvertisement__Output as _fedtune_v1_SecAggAdvertisement__Output } from './fedtune/v1/SecAggAdvertisement';
import type { SecAggConsistencyCall as _fedtune_v1_SecAggConsistencyCall, SecAggConsistencyCall__Output as _fedtune_v1_SecAggConsistencyCall__Output } from './fedtune/v1/SecAggConsistencyCall';
import type { SecAggConsistencyCheck as _fedtune_v1_SecAggConsistencyCheck, SecAggConsistencyCheck__Output as _fedtune_v1_SecAggConsistencyCheck__Output } from './fedtune/v1/SecAggConsistencyCheck';
import type { SecAggConsistencySignature as _fedtune_v1_SecAggConsistencySignature, SecAggConsistencySignature__Output as _fedtune_v1_SecAggConsistencySignature__Output } from './fedtune/v1/SecAggConsistencySignature';
import type { SecAggRevealedShare as _fedtune_v1_SecAggRevealedShare, SecAggRevealedShare__Output as _fedtune_v1_SecAggRevealedShare__Output } from './fedtune/v1/SecAggRevealedShare';
import type { SecAggRoster as _fedtune_v1_SecAggRoster, SecAggRoster__Output as _fedtune_v1_SecAggRoster__Output } from './fedtune/v1/SecAggRoster';
import type { SecAggRoutedShare as _fedtune_v1_SecAggRoutedShare, SecAggRoutedShare__Output as _fedtune_v1_SecAggRoutedShare__Output } from './fedtune/v1/SecAggRoutedShare';
import type { SecAggRoutedShares as _fedtune_v1_SecAggRoutedShares, SecAggRoutedShares__Output as _fedtune_v1_SecAggRoutedShares__Output } from './fedtune/v1/SecAggRoutedShares';
import type { SecAggSealedShares as _fedtune_v1_SecAggSealedShares, SecAggSealedShares__Output as _fedtune_v1_SecAggSealedShares__Output } from './fedtune/v1/SecAggSealedShares';
import type { SecAggSettings as _fedtune_v1_SecAggSettings, SecAggSettings__Output as _fedtune_v1_SecAggSettings__Output } from './fedtune/v1/SecAggSettings';
import type { SecAggShareKeys as _fedtune_v1_SecAggShareKeys, SecAggShareKeys__Output as _fedtune_v1_SecAggShareKeys__Output } from './fedtune/v1/SecAggShareKeys';
import type { SecAggShareKeysCall as _fedtune_v1_SecAggShareKeysCall, SecAggShareKeysCall__Output as _fedtune_v1_SecAggShareKeysCall__Output } from './fedtune/v1/SecAggShareKeysCall';
import type { SecAggUnmaskCall as _fedtune_v1_SecAggUnmaskCall, SecAggUnmaskCall__Output as _fedtune_v1_SecAggUnmaskCall__Output } from './fedtune/v1/SecAggUnmaskCall';
import type { SecAggUnmaskRequest as _fedtune_v1_SecAggUnmaskRequest, SecAggUnmaskRequest__Output as _fedtune_v1_SecAggUnmaskRequest__Output } from './fedtune/v1/SecAggUnmaskRequest';
import type { SecAggUnmaskResponse as _fedtune_v1_SecAggUnmaskResponse, SecAggUnmaskResponse__Output as _fedtune_v1_SecAggUnmaskResponse__Output } from './fedtune/v1/SecAggUnmaskResponse';
import type { StreamTasksRequest as _fedtune_v1_StreamTasksRequest, StreamTasksRequest__Output as _fedtune_v1_StreamTasksRequest__Output } from './fedtune/v1/StreamTasksRequest';
import type { StreamTrailer as _fedtune_v1_StreamTrailer, StreamTrailer__Output as _fedtune_v1_StreamTrailer__Output } from './fedtune/v1/StreamTrailer';
import type { TaskEvent as _fedtune_v1_TaskEvent, TaskEvent__Output as _fedtune_v1_TaskEvent__Output } from './fedtune/v1/TaskEvent';
import type { TensorFrame as _fedtune_v1_TensorFrame, TensorFrame__Output as _fedtune_v1_TensorFrame__Output } from './fedtune/v1/TensorFrame';
import type { TensorHeader as _fedtune_v1_TensorHeader, TensorHeader__Output as _fedtune_v1_TensorHeader__Output } from './fedtune/v1/TensorHeader';
import type { TensorSpec as _fedtune_v1_TensorSpec, TensorSpec__Output as _fedtune_v1_TensorSpec__Output } from './fedtune/v1/TensorSpec';
import type { TrainTask as _fedtune_v1_TrainTask, TrainTask__Output as _fedtune_v1_TrainTask__Output } from './fedtune/v1/TrainTask';
import type { TrainingConfig as _fedtune_v1_TrainingConfig, TrainingConfig__Output as _fedtune_v1_TrainingConfig__Output } from './fedtune/v1/TrainingConfig';
import type { UploadFrame as _fedtune_v1_UploadFrame, UploadFrame__Output as _fedtune_v1_UploadFrame__Output } from './fedtune/v1/UploadFrame';
import type { UploadHeader as _fedtune_v1_UploadHeader, UploadHeader__Output as _fedtune_v1_UploadHeader__Output } from './fedtune/v1/UploadHeader';
import type { UploadResponse as _fedtune_v1_UploadResponse, UploadResponse__Output as _fedtune_v1_UploadResponse__Output } from './fedtune/v1/UploadResponse';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  fedtune: {
    v1: {
      CancelTask: MessageTypeDefinition<_fedtune_v1_CancelTask, _fedtune_v1_CancelTask__Output>
      CoordinatorKeys: MessageTypeDefinition<_fedtune_v1_CoordinatorKeys, _fedtune_v1_CoordinatorKeys__Output>
      DType: EnumTypeDefinition
      DeclineReason: EnumTypeDefinition
      DeclineTaskAck: MessageTypeDefinition<_fedtune_v1_DeclineTaskAck, _fedtune_v1_DeclineTaskAck__Output>
      DeclineTaskRequest: MessageTypeDefinition<_fedtune_v1_DeclineTaskRequest, _fedtune_v1_DeclineTaskRequest__Output>
      DownloadRequest: MessageTypeDefinition<_fedtune_v1_DownloadRequest, _fedtune_v1_DownloadRequest__Output>
      EvaluateTask: MessageTypeDefinition<_fedtune_v1_EvaluateTask, _fedtune_v1_EvaluateTask__Output>
      EvaluationAck: MessageTypeDefinition<_fedtune_v1_EvaluationAck, _fedtune_v1_EvaluationAck__Output>
      EvaluationReport: MessageTypeDefinition<_fedtune_v1_EvaluationReport, _fedtune_v1_EvaluationReport__Output>
      Federation: SubtypeConstructor<typeof grpc.Client, _fedtune_v1_FederationClient> & { service: _fedtune_v1_FederationDefinition }
      HelloRequest: MessageTypeDefinition<_fedtune_v1_HelloRequest, _fedtune_v1_HelloRequest__Output>
      HelloResponse: MessageTypeDefinition<_fedtune_v1_HelloResponse, _fedtune_v1_HelloResponse__Output>
      JoinRequest: MessageTypeDefinition<_fedtune_v1_JoinRequest, _fedtune_v1_JoinRequest__Output>
      JoinResponse: MessageTypeDefinition<_fedtune_v1_JoinResponse, _fedtune_v1_JoinResponse__Output>
      LeaveRequest: MessageTypeDefinition<_fedtune_v1_LeaveRequest, _fedtune_v1_LeaveRequest__Output>
      LeaveResponse: MessageTypeDefinition<_fedtune_v1_LeaveResponse, _fedtune_v1_LeaveResponse__Output>
      MetricsAck: MessageTypeDefinition<_fedtune_v1_MetricsAck, _fedtune_v1_MetricsAck__Output>
      MetricsReport: MessageTypeDefinition<_fedtune_v1_MetricsReport, _fedtune_v1_MetricsReport__Output>
      RunFinished: MessageTypeDefinition<_fedtune_v1_RunFinished, _fedtune_v1_RunFinished__Output>
      SealedEnvelope: MessageTypeDefinition<_fedtune_v1_SealedEnvelope, _fedtune_v1_SealedEnvelope__Output>
      SecAggAck: MessageTypeDefinition<_fedtune_v1_SecAggAck, _fedtune_v1_SecAggAck__Output>
      SecAggAdvertiseCall: MessageTypeDefinition<_fedtune_v1_SecAggAdvertiseCall, _fedtune_v1_SecAggAdvertiseCall__Output>
      SecAggAdvertisement: MessageTypeDefinition<_fedtune_v1_SecAggAdvertisement, _fedtune_v1_SecAggAdvertisement__Output>
      SecAggConsistencyCall: MessageTypeDefinition<_fedtune_v1_SecAggConsistencyCall, _fedtune_v1_SecAggConsistencyCall__Output>
      SecAggConsistencyCheck: MessageTypeDefinition<_fedtune_v1_SecAggConsistencyCheck, _fedtune_v1_SecAggConsistencyCheck__Output>
      SecAggConsistencySignature: MessageTypeDefinition<_fedtune_v1_SecAggConsistencySignature, _fedtune_v1_SecAggConsistencySignature__Output>
      SecAggRevealedShare: MessageTypeDefinition<_fedtune_v1_SecAggRevealedShare, _fedtune_v1_SecAggRevealedShare__Output>
      SecAggRoster: MessageTypeDefinition<_fedtune_v1_SecAggRoster, _fedtune_v1_SecAggRoster__Output>
      SecAggRoutedShare: MessageTypeDefinition<_fedtune_v1_SecAggRoutedShare, _fedtune_v1_SecAggRoutedShare__Output>
      SecAggRoutedShares: MessageTypeDefinition<_fedtune_v1_SecAggRoutedShares, _fedtune_v1_SecAggRoutedShares__Output>
      SecAggSealedShares: MessageTypeDefinition<_fedtune_v1_SecAggSealedShares, _fedtune_v1_SecAggSealedShares__Output>
      SecAggSettings: MessageTypeDefinition<_fedtune_v1_SecAggSettings, _fedtune_v1_SecAggSettings__Output>
      SecAggShareKeys: MessageTypeDefinition<_fedtune_v1_SecAggShareKeys, _fedtune_v1_SecAggShareKeys__Output>
      SecAggShareKeysCall: MessageTypeDefinition<_fedtune_v1_SecAggShareKeysCall, _fedtune_v1_SecAggShareKeysCall__Output>
      SecAggUnmaskCall: MessageTypeDefinition<_fedtune_v1_SecAggUnmaskCall, _fedtune_v1_SecAggUnmaskCall__Output>
      SecAggUnmaskRequest: MessageTypeDefinition<_fedtune_v1_SecAggUnmaskRequest, _fedtune_v1_SecAggUnmaskRequest__Output>
      SecAggUnmaskResponse: MessageTypeDefinition<_fedtune_v1_SecAggUnmaskResponse, _fedtune_v1_SecAggUnmaskResponse__Output>
      StreamTasksRequest: MessageTypeDefinition<_fedtune_v1_StreamTasksRequest, _fedtune_v1_StreamTasksRequest__Output>
      StreamTrailer: MessageTypeDefinition<_fedtune_v1_StreamTrailer, _fedtune_v1_StreamTrailer__Output>
      TaskEvent: MessageTypeDefinition<_fedtune_v1_TaskEvent, _fedtune_v1_TaskEvent__Output>
      TensorFrame: MessageTypeDefinition<_fedtune_v1_TensorFrame, _fedtune_v1_TensorFrame__Output>
      TensorHeader: MessageTypeDefinition<_fedtune_v1_TensorHeader, _fedtune_v1_TensorHeader__Output>
      TensorSpec: MessageTypeDefinition<_fedtune_v1_TensorSpec, _fedtune_v1_TensorSpec__Output>
      TrainTask: MessageTypeDefinition<_fedtune_v1_TrainTask, _fedtune_v1_TrainTask__Output>
      TrainingConfig: MessageTypeDefinition<_fedtune_v1_TrainingConfig, _fedtune_v1_TrainingConfig__Output>
      UploadFrame: MessageTypeDefinition<_fedtune_v1_UploadFrame, _fedtune_v1_UploadFrame__Output>
      UploadHeader: MessageTypeDefinition<_fedtune_v1_UploadHeader, _fedtune_v1_UploadHeader__Output>
      UploadResponse: MessageTypeDefinition<_fedtune_v1_UploadResponse, _fedtune_v1_UploadResponse__Output>
    }
  }
}

