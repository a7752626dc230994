#!/usr/bin/env node
// The container's HEALTHCHECK: exits 0 when the coordinator's gRPC health service answers SERVING, 1
// otherwise (printing the status or error). Usage: healthcheck [host:port] (default 127.0.0.1:$FEDTUNE_SERVER_PORT
// or 50051). Plaintext gRPC only; a TLS coordinator is probed from outside the container.
import { checkHealth } from './health-probe';

const address = process.argv[2] ?? `127.0.0.1:${process.env.FEDTUNE_SERVER_PORT || '50051'}`;
checkHealth(address).then(
  (s) => {
    console.log(s);
    process.exit(s === 'SERVING' ? 0 : 1);
  },
  (e: Error) => {
    console.log(`unhealthy: ${e.message}`);
    process.exit(1);
  },
);
