// A gRPC server interceptor that counts what crosses the wire for the metrics: calls by method and final
// status, refusals by status name, and message bytes in and out. Installed only when metrics are on.
// Bytes are the serialized message sizes (the interceptor sees decoded messages, so they are re-encoded to be
// measured: a memory copy per message, small next to the network transfer it accompanies).
import * as grpc from '@grpc/grpc-js';
import { loadFedtuneProto } from '../../proto/load';
import type { CoordinatorMetrics } from './metrics';

type Encode = (m: unknown) => Buffer;

/** Request encoders by path: the server side of a method only carries the decoder. */
function requestEncoders(): Map<string, Encode> {
  const svc = loadFedtuneProto().fedtune.v1.Federation.service as grpc.ServiceDefinition;
  return new Map(Object.values(svc).map((d) => [d.path, d.requestSerialize as Encode]));
}

/** "/fedtune.v1.Federation/UploadUpdate" → "UploadUpdate"; other services keep their full path. */
function methodLabel(path: string): string {
  const m = /^\/fedtune\.v1\.Federation\/(\w+)$/.exec(path);
  return m ? m[1]! : path.replace(/^\//, '');
}

export function metricsInterceptor(metrics: CoordinatorMetrics): grpc.ServerInterceptor {
  const encoders = requestEncoders();
  return (desc, call) => {
    const method = methodLabel(desc.path);
    // Under Poisson sampling a sampled site's own calls are not counted (ops/sample-secrecy.ts).
    if (metrics.uncountedMethods.has(method)) return new grpc.ServerInterceptingCall(call);
    const encodeRequest = encoders.get(desc.path);
    const size = (bytes: Encode | undefined, m: unknown): number => {
      if (!bytes) return 0;
      try {
        return bytes(m).length;
      } catch {
        return 0; // a message that does not encode is the handler's problem, not the counter's
      }
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMessage: (message, nextMsg) => {
            metrics.grpcReceivedBytes.inc({ method }, size(encodeRequest, message));
            nextMsg(message);
          },
        }),
      sendMessage: (message, next) => {
        metrics.grpcSentBytes.inc({ method }, size(desc.responseSerialize as Encode, message));
        next(message);
      },
      sendStatus: (st, next) => {
        const code = grpc.status[st.code ?? grpc.status.UNKNOWN] ?? 'UNKNOWN';
        metrics.grpcHandled.inc({ method, code });
        if (st.code !== grpc.status.OK && st.code !== grpc.status.CANCELLED) metrics.grpcRejections.inc({ method, code });
        next(st);
      },
    });
  };
}
