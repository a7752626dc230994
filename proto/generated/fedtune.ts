import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { CancelTask as _fedtune_v1_CancelTask, CancelTask__Output as _fedtune_v1_CancelTask__Output } from './fedtune/v1/CancelTask';
import type { CoordinatorKeys as _fedtune_v1_CoordinatorKeys, CoordinatorKeys__Output as _fedtune_v1_CoordinatorKeys__Output } from './fedtune/v1/CoordinatorKeys';
import type { DownloadRequest as _fedtune_v1_DownloadRequest, DownloadRequest__Output as _fedtune_v1_DownloadRequest__Output } from './fedtune/v1/DownloadRequest';
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
      DownloadRequest: MessageTypeDefinition<_fedtune_v1_DownloadRequest, _fedtune_v1_DownloadRequest__Output>
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

