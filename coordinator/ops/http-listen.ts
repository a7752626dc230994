// One small HTTP listener (metrics, dashboard): bind, report the bound port, close without waiting for
// keep-alive connections (a scraper holds one open).
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HttpEndpoint {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function listenHttp(host: string, port: number, handler: http.RequestListener): Promise<HttpEndpoint> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${bound}`,
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
