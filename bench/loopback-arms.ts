// The loopback baselines of the download bench (bench/download-bench.ts): the same bytes over raw TCP, with a
// reader that only counts, hashes, or hashes and copies into tensors, and over node:http2 alone. Each arm is split
// into its sending side (a server that writes `bytes` to every connection or request) and its receiving side
// (timed), so that the bench can run the senders in this process or in a child process
// (bench/fixtures/download-sender.ts), as a coordinator and a site run when deployed.
import { createHash } from 'node:crypto';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { SITE_CHANNEL_OPTIONS } from '../client-sdk/download';

const now = (): number => Number(process.hrtime.bigint()) / 1e9;

/** A listening sender on 127.0.0.1. */
export interface LoopbackSender {
  port: number;
  close(): void;
}

/** What the reader of the raw TCP socket does with the bytes. */
export type TcpReader = 'count' | 'hash' | 'hash+copy';

/** A raw TCP server that writes `bytes` to each connection in 1 MiB writes, then ends it. */
export async function tcpSender(bytes: number): Promise<LoopbackSender> {
  const chunk = Buffer.alloc(1 << 20, 7);
  const server = net.createServer((sock) => {
    sock.on('error', () => undefined); // the reader closes once it has every byte
    let sent = 0;
    const go = (): void => {
      while (sent < bytes) {
        const part = chunk.subarray(0, Math.min(chunk.length, bytes - sent));
        sent += part.length;
        if (!sock.write(part)) return void sock.once('drain', go);
      }
      sock.end();
    };
    go();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

/** Seconds to receive `bytes` from a tcpSender on `port` over a fresh connection; the reader does `reader`. */
export async function tcpReceive(port: number, bytes: number, reader: TcpReader = 'count', tensorBytes = bytes): Promise<number> {
  const t = now();
  const sock = net.connect(port, '127.0.0.1');
  let n = 0;
  const hash = createHash('sha256');
  let dst = new Uint8Array(0);
  let filled = 0;
  await new Promise<void>((resolve, reject) => {
    sock.on('error', reject);
    sock.on('end', () => reject(new Error(`raw TCP arm got ${n} of ${bytes} bytes`)));
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
  });
  const dt = now() - t;
  sock.destroy();
  return dt;
}

/** Seconds to move `bytes` over a fresh loopback TCP connection, both ends in this process. */
export async function rawTcpSeconds(bytes: number, reader: TcpReader = 'count', tensorBytes = bytes): Promise<number> {
  const sender = await tcpSender(bytes);
  try {
    return await tcpReceive(sender.port, bytes, reader, tensorBytes);
  } finally {
    sender.close();
  }
}

/** The largest SETTINGS_MAX_FRAME_SIZE HTTP/2 allows (2^24 - 1); the HTTP/2 arm offers it on both sides. */
const MAX_FRAME_SIZE = 2 ** 24 - 1;

export interface Http2Transfer {
  seconds: number;
  /** 'data' events the reader saw, and the largest: one per DATA frame of at most 16 KiB, whatever was offered. */
  dataEvents: number;
  largestEvent: number;
}

/** A node:http2 server that answers every request with `bytes` in 1 MiB writes. */
export async function http2Sender(bytes: number): Promise<LoopbackSender> {
  const chunk = Buffer.alloc(1 << 20, 7);
  const server = http2.createServer({ settings: { maxFrameSize: MAX_FRAME_SIZE } });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => undefined);
  });
  server.on('stream', (s) => {
    s.on('error', () => undefined);
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
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sessions) s.destroy();
      server.close();
    },
  };
}

/**
 * Receives one response of `bytes` from an http2Sender with node:http2 alone (what grpc-js runs on): the site's
 * 16 MiB window, SETTINGS_MAX_FRAME_SIZE 2^24 - 1 offered by both ends, the reader only counts. Node's HTTP/2 still
 * sends DATA frames of at most 16 KiB (nghttp2 without a read-length callback) and hands each one to JavaScript on
 * its own; grpc-js has no option for either. This is the ceiling of any gRPC download in node, before gRPC's
 * framing and copies.
 */
export async function http2Receive(port: number, bytes: number): Promise<Http2Transfer> {
  const window = SITE_CHANNEL_OPTIONS['grpc-node.flow_control_window'];
  const t = now();
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: window, maxFrameSize: MAX_FRAME_SIZE } });
  let dataEvents = 0;
  let largestEvent = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      session.once('error', reject);
      session.once('remoteSettings', () => resolve());
    });
    session.setLocalWindowSize(window);
    await new Promise<void>((resolve, reject) => {
      const req = session.request({ ':path': '/' });
      let n = 0;
      req.on('data', (d: Buffer) => {
        n += d.length;
        dataEvents++;
        largestEvent = Math.max(largestEvent, d.length);
      });
      req.on('end', () => (n === bytes ? resolve() : reject(new Error(`http2 arm got ${n} of ${bytes} bytes`))));
      req.on('error', reject);
    });
  } finally {
    session.close();
  }
  return { seconds: now() - t, dataEvents, largestEvent };
}

/** Moves `bytes` as one HTTP/2 response over loopback, both ends in this process. */
export async function rawHttp2(bytes: number): Promise<Http2Transfer> {
  const sender = await http2Sender(bytes);
  try {
    return await http2Receive(sender.port, bytes);
  } finally {
    sender.close();
  }
}
