// Download frames sent as they lie in the image (download-image.ts), with no copy per call. grpc-js frames every
// response message by allocating a fresh buffer of its length + 5 and copying the message into it after the gRPC
// prefix (BaseServerInterceptingCall.serializeMessage), whatever the serializer returned. For a 64 MiB download
// that is 64 MiB of fresh memory written, page-faulted and freed per site, on the one thread that serves every
// range call: measured on the 2-core box, 40-50 ms of that thread's CPU and 30 ms of the others' (freeing) per
// 64 MiB against 23-26 ms and 28 ms without it (bench/download-serve-probe.ts, the coordinator as sender).
//
// So an EncodedFrame carries its message already prefixed (download-image.ts), and grpc-js's framing step is
// taught to send that buffer as it is: only for EncodedFrame values; anything else is framed by grpc-js as
// before. The method is private to grpc-js: if a release renames it, nothing is patched, the service's own
// serializer (preEncodedDownloads) still hands grpc-js the message, and the download is as correct as before,
// only slower (test/download-wire.test.ts fails, so an upgrade that loses the fast path does not go unnoticed).
import { BaseServerInterceptingCall } from '@grpc/grpc-js/build/src/server-interceptors';

/** One message as gRPC frames it: the compressed flag (0: grpc-js never compresses responses), its length, its bytes. */
export function grpcFramed(message: Buffer): Buffer {
  const wire = Buffer.allocUnsafe(message.length + 5);
  wire[0] = 0;
  wire.writeUInt32BE(message.length, 1);
  message.copy(wire, 5);
  return wire;
}

/** A value that already carries its gRPC framing. */
export interface PreFramed {
  readonly wire: Buffer;
}

/** Frames sent without grpc-js's copy (for tests and the bench). */
export const wireStats = { framesSentAsIs: 0 };

type Serialize = (this: unknown, value: unknown) => Buffer;
let installed: boolean | undefined;

/**
 * Makes grpc-js send instances of `frameClass` as their `wire` buffer (once per process; later calls only say
 * whether it is in place). False when this grpc-js has no such step to take over.
 */
export function sendPreFramedAsIs(frameClass: abstract new (...args: never[]) => PreFramed): boolean {
  if (installed !== undefined) return installed;
  const proto = BaseServerInterceptingCall.prototype as unknown as { serializeMessage?: Serialize };
  const inner = proto.serializeMessage;
  if (typeof inner !== 'function' || inner.length !== 1) return (installed = false);
  proto.serializeMessage = function (this: unknown, value: unknown): Buffer {
    if (value instanceof frameClass) {
      wireStats.framesSentAsIs++;
      return value.wire;
    }
    return inner.call(this, value);
  };
  return (installed = true);
}
