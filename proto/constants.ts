// Wire constants both sides must agree on. They live apart from proto/load.ts (which loads gRPC) so the
// wire-agnostic core — tensor streams, the round engine — can use them without loading @grpc/grpc-js.

/** The wire protocol version this build speaks; peers speaking another are refused. */
// 3: the join signature binds the coordinator's keys (fedtune/join/v2) and SecAgg has a consistency stage.
// 4: SecAgg masks are expanded with AES-256-CTR instead of ChaCha20 (proto/secagg/prg.ts).
export const PROTOCOL_VERSION = 4;

/** Default data chunk size: far below gRPC's 4 MiB default message limit. */
export const DEFAULT_CHUNK_BYTES = 1 << 20;
