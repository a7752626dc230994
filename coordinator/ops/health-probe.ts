// A gRPC health client (grpc.health.v1.Health/Check and Watch), for the container's HEALTHCHECK script and
// the tests. Loads only grpc-js and the health proto: starting it costs little.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';

interface HealthResponse {
  status: string;
}
interface HealthClient extends grpc.Client {
  Check(req: { service: string }, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: HealthResponse) => void): void;
  Watch(req: { service: string }): grpc.ClientReadableStream<HealthResponse>;
}

export function healthClient(address: string, credentials = grpc.credentials.createInsecure()): HealthClient {
  const def = protoLoader.loadSync(protoPath, { keepCase: true, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { health: { v1: { Health: new (a: string, c: grpc.ChannelCredentials) => HealthClient } } };
  };
  return new pkg.grpc.health.v1.Health(address, credentials);
}

/** The serving status of `service` ('' = the server as a whole): SERVING, NOT_SERVING, … */
export async function checkHealth(address: string, service = '', timeoutMs = 3000, credentials?: grpc.ChannelCredentials): Promise<string> {
  const c = healthClient(address, credentials);
  try {
    return await new Promise<string>((resolve, reject) =>
      c.Check({ service }, { deadline: Date.now() + timeoutMs }, (e, r) => (e ? reject(e) : resolve(r!.status))),
    );
  } finally {
    c.close();
  }
}
