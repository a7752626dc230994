// Original file: proto/fedtune.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { DeclineTaskAck as _fedtune_v1_DeclineTaskAck, DeclineTaskAck__Output as _fedtune_v1_DeclineTaskAck__Output } from '../../fedtune/v1/DeclineTaskAck';
import type { DeclineTaskRequest as _fedtune_v1_DeclineTaskRequest, DeclineTaskRequest__Output as _fedtune_v1_DeclineTaskRequest__Output } from '../../fedtune/v1/DeclineTaskRequest';
import type { DownloadRequest as _fedtune_v1_DownloadRequest, DownloadRequest__Output as _fedtune_v1_DownloadRequest__Output } from '../../fedtune/v1/DownloadRequest';
import type { EvaluationAck as _fedtune_v1_EvaluationAck, EvaluationAck__Output as _fedtune_v1_EvaluationAck__Output } from '../../fedtune/v1/EvaluationAck';
import type { EvaluationReport as _fedtune_v1_EvaluationReport, EvaluationReport__Output as _fedtune_v1_EvaluationReport__Output } from '../../fedtune/v1/EvaluationReport';
import type { HelloRequest as _fedtune_v1_HelloRequest, HelloRequest__Output as _fedtune_v1_HelloRequest__Output } from '../../fedtune/v1/HelloRequest';
import type { HelloResponse as _fedtune_v1_HelloResponse, HelloResponse__Output as _fedtune_v1_HelloResponse__Output } from '../../fedtune/v1/HelloResponse';
import type { JoinRequest as _fedtune_v1_JoinRequest, JoinRequest__Output as _fedtune_v1_JoinRequest__Output } from '../../fedtune/v1/JoinRequest';
import type { JoinResponse as _fedtune_v1_JoinResponse, JoinResponse__Output as _fedtune_v1_JoinResponse__Output } from '../../fedtune/v1/JoinResponse';
import type { LeaveRequest as _fedtune_v1_LeaveRequest, LeaveRequest__Output as _fedtune_v1_LeaveRequest__Output } from '../../fedtune/v1/LeaveRequest';
import type { LeaveResponse as _fedtune_v1_LeaveResponse, LeaveResponse__Output as _fedtune_v1_LeaveResponse__Output } from '../../fedtune/v1/LeaveResponse';
import type { MetricsAck as _fedtune_v1_MetricsAck, MetricsAck__Output as _fedtune_v1_MetricsAck__Output } from '../../fedtune/v1/MetricsAck';
import type { MetricsReport as _fedtune_v1_MetricsReport, MetricsReport__Output as _fedtune_v1_MetricsReport__Output } from '../../fedtune/v1/MetricsReport';
import type { SecAggAck as _fedtune_v1_SecAggAck, SecAggAck__Output as _fedtune_v1_SecAggAck__Output } from '../../fedtune/v1/SecAggAck';
import type { SecAggAdvertiseCall as _fedtune_v1_SecAggAdvertiseCall, SecAggAdvertiseCall__Output as _fedtune_v1_SecAggAdvertiseCall__Output } from '../../fedtune/v1/SecAggAdvertiseCall';
import type { SecAggConsistencyCall as _fedtune_v1_SecAggConsistencyCall, SecAggConsistencyCall__Output as _fedtune_v1_SecAggConsistencyCall__Output } from '../../fedtune/v1/SecAggConsistencyCall';
import type { SecAggShareKeysCall as _fedtune_v1_SecAggShareKeysCall, SecAggShareKeysCall__Output as _fedtune_v1_SecAggShareKeysCall__Output } from '../../fedtune/v1/SecAggShareKeysCall';
import type { SecAggUnmaskCall as _fedtune_v1_SecAggUnmaskCall, SecAggUnmaskCall__Output as _fedtune_v1_SecAggUnmaskCall__Output } from '../../fedtune/v1/SecAggUnmaskCall';
import type { StreamTasksRequest as _fedtune_v1_StreamTasksRequest, StreamTasksRequest__Output as _fedtune_v1_StreamTasksRequest__Output } from '../../fedtune/v1/StreamTasksRequest';
import type { TaskEvent as _fedtune_v1_TaskEvent, TaskEvent__Output as _fedtune_v1_TaskEvent__Output } from '../../fedtune/v1/TaskEvent';
import type { TensorFrame as _fedtune_v1_TensorFrame, TensorFrame__Output as _fedtune_v1_TensorFrame__Output } from '../../fedtune/v1/TensorFrame';
import type { UploadFrame as _fedtune_v1_UploadFrame, UploadFrame__Output as _fedtune_v1_UploadFrame__Output } from '../../fedtune/v1/UploadFrame';
import type { UploadResponse as _fedtune_v1_UploadResponse, UploadResponse__Output as _fedtune_v1_UploadResponse__Output } from '../../fedtune/v1/UploadResponse';

export interface FederationClient extends grpc.Client {
  DeclineTask(argument: _fedtune_v1_DeclineTaskRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_DeclineTaskAck__Output>): grpc.ClientUnaryCall;
  DeclineTask(argument: _fedtune_v1_DeclineTaskRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_DeclineTaskAck__Output>): grpc.ClientUnaryCall;
  DeclineTask(argument: _fedtune_v1_DeclineTaskRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_DeclineTaskAck__Output>): grpc.ClientUnaryCall;
  DeclineTask(argument: _fedtune_v1_DeclineTaskRequest, callback: grpc.requestCallback<_fedtune_v1_DeclineTaskAck__Output>): grpc.ClientUnaryCall;
  declineTask(argument: _fedtune_v1_DeclineTaskRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_DeclineTaskAck__Output>): grpc.ClientUnaryCall;
  declineTask(argument: _fedtune_v1_DeclineTaskRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_DeclineTaskAck__Output>): grpc.ClientUnaryCall;
  declineTask(argument: _fedtune_v1_DeclineTaskRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_DeclineTaskAck__Output>): grpc.ClientUnaryCall;
  declineTask(argument: _fedtune_v1_DeclineTaskRequest, callback: grpc.requestCallback<_fedtune_v1_DeclineTaskAck__Output>): grpc.ClientUnaryCall;
  
  DownloadAdapter(argument: _fedtune_v1_DownloadRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedtune_v1_TensorFrame__Output>;
  DownloadAdapter(argument: _fedtune_v1_DownloadRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedtune_v1_TensorFrame__Output>;
  downloadAdapter(argument: _fedtune_v1_DownloadRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedtune_v1_TensorFrame__Output>;
  downloadAdapter(argument: _fedtune_v1_DownloadRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedtune_v1_TensorFrame__Output>;
  
  Hello(argument: _fedtune_v1_HelloRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_HelloResponse__Output>): grpc.ClientUnaryCall;
  Hello(argument: _fedtune_v1_HelloRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_HelloResponse__Output>): grpc.ClientUnaryCall;
  Hello(argument: _fedtune_v1_HelloRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_HelloResponse__Output>): grpc.ClientUnaryCall;
  Hello(argument: _fedtune_v1_HelloRequest, callback: grpc.requestCallback<_fedtune_v1_HelloResponse__Output>): grpc.ClientUnaryCall;
  hello(argument: _fedtune_v1_HelloRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_HelloResponse__Output>): grpc.ClientUnaryCall;
  hello(argument: _fedtune_v1_HelloRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_HelloResponse__Output>): grpc.ClientUnaryCall;
  hello(argument: _fedtune_v1_HelloRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_HelloResponse__Output>): grpc.ClientUnaryCall;
  hello(argument: _fedtune_v1_HelloRequest, callback: grpc.requestCallback<_fedtune_v1_HelloResponse__Output>): grpc.ClientUnaryCall;
  
  Join(argument: _fedtune_v1_JoinRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  Join(argument: _fedtune_v1_JoinRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  Join(argument: _fedtune_v1_JoinRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  Join(argument: _fedtune_v1_JoinRequest, callback: grpc.requestCallback<_fedtune_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  join(argument: _fedtune_v1_JoinRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  join(argument: _fedtune_v1_JoinRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  join(argument: _fedtune_v1_JoinRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  join(argument: _fedtune_v1_JoinRequest, callback: grpc.requestCallback<_fedtune_v1_JoinResponse__Output>): grpc.ClientUnaryCall;
  
  Leave(argument: _fedtune_v1_LeaveRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_LeaveResponse__Output>): grpc.ClientUnaryCall;
  Leave(argument: _fedtune_v1_LeaveRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_LeaveResponse__Output>): grpc.ClientUnaryCall;
  Leave(argument: _fedtune_v1_LeaveRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_LeaveResponse__Output>): grpc.ClientUnaryCall;
  Leave(argument: _fedtune_v1_LeaveRequest, callback: grpc.requestCallback<_fedtune_v1_LeaveResponse__Output>): grpc.ClientUnaryCall;
  leave(argument: _fedtune_v1_LeaveRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_LeaveResponse__Output>): grpc.ClientUnaryCall;
  leave(argument: _fedtune_v1_LeaveRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_LeaveResponse__Output>): grpc.ClientUnaryCall;
  leave(argument: _fedtune_v1_LeaveRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_LeaveResponse__Output>): grpc.ClientUnaryCall;
  leave(argument: _fedtune_v1_LeaveRequest, callback: grpc.requestCallback<_fedtune_v1_LeaveResponse__Output>): grpc.ClientUnaryCall;
  
  ReportEvaluation(argument: _fedtune_v1_EvaluationReport, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_EvaluationAck__Output>): grpc.ClientUnaryCall;
  ReportEvaluation(argument: _fedtune_v1_EvaluationReport, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_EvaluationAck__Output>): grpc.ClientUnaryCall;
  ReportEvaluation(argument: _fedtune_v1_EvaluationReport, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_EvaluationAck__Output>): grpc.ClientUnaryCall;
  ReportEvaluation(argument: _fedtune_v1_EvaluationReport, callback: grpc.requestCallback<_fedtune_v1_EvaluationAck__Output>): grpc.ClientUnaryCall;
  reportEvaluation(argument: _fedtune_v1_EvaluationReport, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_EvaluationAck__Output>): grpc.ClientUnaryCall;
  reportEvaluation(argument: _fedtune_v1_EvaluationReport, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_EvaluationAck__Output>): grpc.ClientUnaryCall;
  reportEvaluation(argument: _fedtune_v1_EvaluationReport, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_EvaluationAck__Output>): grpc.ClientUnaryCall;
  reportEvaluation(argument: _fedtune_v1_EvaluationReport, callback: grpc.requestCallback<_fedtune_v1_EvaluationAck__Output>): grpc.ClientUnaryCall;
  
  ReportMetrics(argument: _fedtune_v1_MetricsReport, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_MetricsAck__Output>): grpc.ClientUnaryCall;
  ReportMetrics(argument: _fedtune_v1_MetricsReport, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_MetricsAck__Output>): grpc.ClientUnaryCall;
  ReportMetrics(argument: _fedtune_v1_MetricsReport, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_MetricsAck__Output>): grpc.ClientUnaryCall;
  ReportMetrics(argument: _fedtune_v1_MetricsReport, callback: grpc.requestCallback<_fedtune_v1_MetricsAck__Output>): grpc.ClientUnaryCall;
  reportMetrics(argument: _fedtune_v1_MetricsReport, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_MetricsAck__Output>): grpc.ClientUnaryCall;
  reportMetrics(argument: _fedtune_v1_MetricsReport, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_MetricsAck__Output>): grpc.ClientUnaryCall;
  reportMetrics(argument: _fedtune_v1_MetricsReport, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_MetricsAck__Output>): grpc.ClientUnaryCall;
  reportMetrics(argument: _fedtune_v1_MetricsReport, callback: grpc.requestCallback<_fedtune_v1_MetricsAck__Output>): grpc.ClientUnaryCall;
  
  SecAggAdvertise(argument: _fedtune_v1_SecAggAdvertiseCall, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  SecAggAdvertise(argument: _fedtune_v1_SecAggAdvertiseCall, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  SecAggAdvertise(argument: _fedtune_v1_SecAggAdvertiseCall, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  SecAggAdvertise(argument: _fedtune_v1_SecAggAdvertiseCall, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggAdvertise(argument: _fedtune_v1_SecAggAdvertiseCall, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggAdvertise(argument: _fedtune_v1_SecAggAdvertiseCall, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggAdvertise(argument: _fedtune_v1_SecAggAdvertiseCall, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggAdvertise(argument: _fedtune_v1_SecAggAdvertiseCall, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  
  SecAggConsistency(argument: _fedtune_v1_SecAggConsistencyCall, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  SecAggConsistency(argument: _fedtune_v1_SecAggConsistencyCall, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  SecAggConsistency(argument: _fedtune_v1_SecAggConsistencyCall, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  SecAggConsistency(argument: _fedtune_v1_SecAggConsistencyCall, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggConsistency(argument: _fedtune_v1_SecAggConsistencyCall, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggConsistency(argument: _fedtune_v1_SecAggConsistencyCall, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggConsistency(argument: _fedtune_v1_SecAggConsistencyCall, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggConsistency(argument: _fedtune_v1_SecAggConsistencyCall, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  
  SecAggShareKeys(argument: _fedtune_v1_SecAggShareKeysCall, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  SecAggShareKeys(argument: _fedtune_v1_SecAggShareKeysCall, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  SecAggShareKeys(argument: _fedtune_v1_SecAggShareKeysCall, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  SecAggShareKeys(argument: _fedtune_v1_SecAggShareKeysCall, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggShareKeys(argument: _fedtune_v1_SecAggShareKeysCall, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggShareKeys(argument: _fedtune_v1_SecAggShareKeysCall, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggShareKeys(argument: _fedtune_v1_SecAggShareKeysCall, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggShareKeys(argument: _fedtune_v1_SecAggShareKeysCall, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  
  SecAggUnmask(argument: _fedtune_v1_SecAggUnmaskCall, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  SecAggUnmask(argument: _fedtune_v1_SecAggUnmaskCall, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  SecAggUnmask(argument: _fedtune_v1_SecAggUnmaskCall, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  SecAggUnmask(argument: _fedtune_v1_SecAggUnmaskCall, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggUnmask(argument: _fedtune_v1_SecAggUnmaskCall, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggUnmask(argument: _fedtune_v1_SecAggUnmaskCall, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggUnmask(argument: _fedtune_v1_SecAggUnmaskCall, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  secAggUnmask(argument: _fedtune_v1_SecAggUnmaskCall, callback: grpc.requestCallback<_fedtune_v1_SecAggAck__Output>): grpc.ClientUnaryCall;
  
  StreamTasks(argument: _fedtune_v1_StreamTasksRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedtune_v1_TaskEvent__Output>;
  StreamTasks(argument: _fedtune_v1_StreamTasksRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedtune_v1_TaskEvent__Output>;
  streamTasks(argument: _fedtune_v1_StreamTasksRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedtune_v1_TaskEvent__Output>;
  streamTasks(argument: _fedtune_v1_StreamTasksRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedtune_v1_TaskEvent__Output>;
  
  UploadUpdate(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_UploadResponse__Output>): grpc.ClientWritableStream<_fedtune_v1_UploadFrame>;
  UploadUpdate(metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_UploadResponse__Output>): grpc.ClientWritableStream<_fedtune_v1_UploadFrame>;
  UploadUpdate(options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_UploadResponse__Output>): grpc.ClientWritableStream<_fedtune_v1_UploadFrame>;
  UploadUpdate(callback: grpc.requestCallback<_fedtune_v1_UploadResponse__Output>): grpc.ClientWritableStream<_fedtune_v1_UploadFrame>;
  uploadUpdate(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_UploadResponse__Output>): grpc.ClientWritableStream<_fedtune_v1_UploadFrame>;
  uploadUpdate(metadata: grpc.Metadata, callback: grpc.requestCallback<_fedtune_v1_UploadResponse__Output>): grpc.ClientWritableStream<_fedtune_v1_UploadFrame>;
  uploadUpdate(options: grpc.CallOptions, callback: grpc.requestCallback<_fedtune_v1_UploadResponse__Output>): grpc.ClientWritableStream<_fedtune_v1_UploadFrame>;
  uploadUpdate(callback: grpc.requestCallback<_fedtune_v1_UploadResponse__Output>): grpc.ClientWritableStream<_fedtune_v1_UploadFrame>;
  
}

export interface FederationHandlers extends grpc.UntypedServiceImplementation {
  DeclineTask: grpc.handleUnaryCall<_fedtune_v1_DeclineTaskRequest__Output, _fedtune_v1_DeclineTaskAck>;
  
  DownloadAdapter: grpc.handleServerStreamingCall<_fedtune_v1_DownloadRequest__Output, _fedtune_v1_TensorFrame>;
  
  Hello: grpc.handleUnaryCall<_fedtune_v1_HelloRequest__Output, _fedtune_v1_HelloResponse>;
  
  Join: grpc.handleUnaryCall<_fedtune_v1_JoinRequest__Output, _fedtune_v1_JoinResponse>;
  
  Leave: grpc.handleUnaryCall<_fedtune_v1_LeaveRequest__Output, _fedtune_v1_LeaveResponse>;
  
  ReportEvaluation: grpc.handleUnaryCall<_fedtune_v1_EvaluationReport__Output, _fedtune_v1_EvaluationAck>;
  
  ReportMetrics: grpc.handleUnaryCall<_fedtune_v1_MetricsReport__Output, _fedtune_v1_MetricsAck>;
  
  SecAggAdvertise: grpc.handleUnaryCall<_fedtune_v1_SecAggAdvertiseCall__Output, _fedtune_v1_SecAggAck>;
  
  SecAggConsistency: grpc.handleUnaryCall<_fedtune_v1_SecAggConsistencyCall__Output, _fedtune_v1_SecAggAck>;
  
  SecAggShareKeys: grpc.handleUnaryCall<_fedtune_v1_SecAggShareKeysCall__Output, _fedtune_v1_SecAggAck>;
  
  SecAggUnmask: grpc.handleUnaryCall<_fedtune_v1_SecAggUnmaskCall__Output, _fedtune_v1_SecAggAck>;
  
  StreamTasks: grpc.handleServerStreamingCall<_fedtune_v1_StreamTasksRequest__Output, _fedtune_v1_TaskEvent>;
  
  UploadUpdate: grpc.handleClientStreamingCall<_fedtune_v1_UploadFrame__Output, _fedtune_v1_UploadResponse>;
  
}

export interface FederationDefinition extends grpc.ServiceDefinition {
  DeclineTask: MethodDefinition<_fedtune_v1_DeclineTaskRequest, _fedtune_v1_DeclineTaskAck, _fedtune_v1_DeclineTaskRequest__Output, _fedtune_v1_DeclineTaskAck__Output>
  DownloadAdapter: MethodDefinition<_fedtune_v1_DownloadRequest, _fedtune_v1_TensorFrame, _fedtune_v1_DownloadRequest__Output, _fedtune_v1_TensorFrame__Output>
  Hello: MethodDefinition<_fedtune_v1_HelloRequest, _fedtune_v1_HelloResponse, _fedtune_v1_HelloRequest__Output, _fedtune_v1_HelloResponse__Output>
  Join: MethodDefinition<_fedtune_v1_JoinRequest, _fedtune_v1_JoinResponse, _fedtune_v1_JoinRequest__Output, _fedtune_v1_JoinResponse__Output>
  Leave: MethodDefinition<_fedtune_v1_LeaveRequest, _fedtune_v1_LeaveResponse, _fedtune_v1_LeaveRequest__Output, _fedtune_v1_LeaveResponse__Output>
  ReportEvaluation: MethodDefinition<_fedtune_v1_EvaluationReport, _fedtune_v1_EvaluationAck, _fedtune_v1_EvaluationReport__Output, _fedtune_v1_EvaluationAck__Output>
  ReportMetrics: MethodDefinition<_fedtune_v1_MetricsReport, _fedtune_v1_MetricsAck, _fedtune_v1_MetricsReport__Output, _fedtune_v1_MetricsAck__Output>
  SecAggAdvertise: MethodDefinition<_fedtune_v1_SecAggAdvertiseCall, _fedtune_v1_SecAggAck, _fedtune_v1_SecAggAdvertiseCall__Output, _fedtune_v1_SecAggAck__Output>
  SecAggConsistency: MethodDefinition<_fedtune_v1_SecAggConsistencyCall, _fedtune_v1_SecAggAck, _fedtune_v1_SecAggConsistencyCall__Output, _fedtune_v1_SecAggAck__Output>
  SecAggShareKeys: MethodDefinition<_fedtune_v1_SecAggShareKeysCall, _fedtune_v1_SecAggAck, _fedtune_v1_SecAggShareKeysCall__Output, _fedtune_v1_SecAggAck__Output>
  SecAggUnmask: MethodDefinition<_fedtune_v1_SecAggUnmaskCall, _fedtune_v1_SecAggAck, _fedtune_v1_SecAggUnmaskCall__Output, _fedtune_v1_SecAggAck__Output>
  StreamTasks: MethodDefinition<_fedtune_v1_StreamTasksRequest, _fedtune_v1_TaskEvent, _fedtune_v1_StreamTasksRequest__Output, _fedtune_v1_TaskEvent__Output>
  UploadUpdate: MethodDefinition<_fedtune_v1_UploadFrame, _fedtune_v1_UploadResponse, _fedtune_v1_UploadFrame__Output, _fedtune_v1_UploadResponse__Output>
}
