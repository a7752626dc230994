// The protocol's error: what both sides report when a peer gets the protocol wrong. It lives apart from the
// wire so that the wire-agnostic parts (tensor stream, sealing, SecAgg maths) need no gRPC import; only the wire
// layer (proto/load.ts, coordinator/service.ts, the SDK's client transport) talks to @grpc/grpc-js.

/**
 * The gRPC status codes, by gRPC's own names and numeric values (grpc/doc/statuscodes.md), defined here once
 * so the core can name a fault without importing grpc-js. The values are the wire's: a `ProtocolError.code`
 * is handed to gRPC unchanged, and `status.X` here is interchangeable with grpc-js's `status.X` (a test keeps
 * the two tables equal). Named `status` like grpc-js's export so call sites read the same either way.
 */
export const status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type status = (typeof status)[keyof typeof status];

/** An error that maps to one gRPC status; services turn it into the call's status unchanged. */
export class ProtocolError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}
