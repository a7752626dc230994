// Loads fedtune.proto at run time with @grpc/proto-loader. The options here must match the ones used to
// generate proto/generated (see the `gen:proto` script) so the generated types describe what we receive.
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/fedtune';

// Defined in ./constants (no gRPC there); re-exported for the wire layer's convenience.
export { PROTOCOL_VERSION, DEFAULT_CHUNK_BYTES } from './constants';

export const PROTO_PATH = path.resolve(__dirname, '..', '..', 'proto', 'fedtune.proto');

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

let cached: ProtoGrpcType | undefined;

export function loadFedtuneProto(): ProtoGrpcType {
  if (!cached) {
    const def = protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS);
    cached = grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType;
  }
  return cached;
}
