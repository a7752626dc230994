// The loopback baselines of the download bench (bench/download-bench.ts): the same bytes over raw TCP, with a
// reader that only counts, hashes, or hashes and copies into tensors, and over node:http2 alone. Both ends run in
// this process, as the download's coordinator and site do in the bench.
import { createHash } from 'node:crypto';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { SITE_CHANNEL_OPTIONS } from '../client-sdk/download';

const now = (): number => Number(process.hrtime.bigint()) / 1e9;

/** What the reader of the raw TCP socket does with the bytes. */
export type TcpReader = 'count' | 'hash' | 'hash+copy';

/** Seconds to move `bytes` over a fresh loopback TCP connection in 1 MiB writes; the reader does `reader`. */
export async function rawTcpSeconds(bytes: number, reader: TcpReader = 'count', tensorBytes = bytes): Promise<number> {
  const chunk = Buffer.alloc(1 << 20, 7);
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const received = new Promise<void>((resolve) =>
    server.on('connection', (sock) => {
      let n = 0;
      const hash = createHash('sha256');
      let dst = new Uint8Array(0);
      let filled = 0;
      sock.on('data', (d: Buffer) => {
        if (reader !== 'count') hash.update(d);
        if (reader === 'hash+copy') {
          let src: Uint8Array = d;
          while (src.length > 0) {
            if (filled === dst.length) {
              dst = new Uint8Array(Math.min(tensorBytes, bytes - n));
              filled = 0;
            }
            const take = Math.min(src.length, dst.length - filled);
            dst.set(src.subarray(0, take), filled);
            filled += take;
            n += take;
            src = src.subarray(take);
          }
        } else n += d.length;
        if (n >= bytes) {
          if (reader !== 'count') hash.digest();
          resolve();
        }
      });
    }),
  );
  const t = now();
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', r));
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!sock.write(chunk.subarray(0, Math.min(chunk.length, bytes - sent)))) await new Promise<void>((r) => sock.once('drain', r));
  }
  await received;
  const dt = now() - t;
  sock.destroy();
  server.close();
  return dt;
}

/** The largest SETTINGS_MAX_FRAME_SIZE HTTP/2 allows (2^24 - 1); the HTTP/2 arm offers it on both sides. */
const MAX_FRAME_SIZE = 2 ** 24 - 1;

export interface Http2Transfer {
  seconds: number;
  /** 'data' events the reader saw, and the largest: one per DATA frame of at most 16 KiB, whatever was offered. */
  dataEvents: number;
  largestEvent: number;
}

/**
 * Moves `bytes` as one HTTP/2 response over loopback with node:http2 alone (what grpc-js runs on): 1 MiB writes,
 * the site's 16 MiB window, SETTINGS_MAX_FRAME_SIZE 2^24 - 1 offered by both ends, the reader only counts. Node's
 * HTTP/2 still sends DATA frames of at most 16 KiB (nghttp2 without a read-length callback) and hands each one to
 * JavaScript on its own; grpc-js has no option for either. This is the ceiling of any gRPC download in node,
 * before gRPC's framing and copies.
 */
export async function rawHttp2(bytes: number): Promise<Http2Transfer> {
  const chunk = Buffer.alloc(1 << 20, 7);
  const server = http2.createServer({ settings: { maxFrameSize: MAX_FRAME_SIZE } });
  server.on('stream', (s) => {
    s.respond({ ':status': 200 });
    let sent = 0;
    const go = (): void => {
      while (sent < bytes) {
        const part = chunk.subarray(0, Math.min(chunk.length, bytes - sent));
        sent += part.length;
        if (!s.write(part)) return void s.once('drain', go);
      }
      s.end();
    };
    go();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const window = SITE_CHANNEL_OPTIONS['grpc-node.flow_control_window'];
  const t = now();
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: window, maxFrameSize: MAX_FRAME_SIZE } });
  await new Promise<void>((r) => session.once('remoteSettings', () => r()));
  session.setLocalWindowSize(window);
  let dataEvents = 0;
  let largestEvent = 0;
  await new Promise<void>((resolve, reject) => {
    const req = session.request({ ':path': '/' });
    let n = 0;
    req.on('data', (d: Buffer) => {
      n += d.length;
      dataEvents++;
      largestEvent = Math.max(largestEvent, d.length);
    });
    req.on('end', () => (n === bytes ? resolve() : reject(new Error(`http2 arm got ${n} bytes`))));
    req.on('error', reject);
  });
  const seconds = now() - t;
  session.close();
  server.close();
  return { seconds, dataEvents, largestEvent };
}
