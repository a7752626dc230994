// A coordinator written on node:http2 by hand, speaking gRPC's framing, for the range workers' own HTTP/2 client
// (client-sdk/download-range-h2.ts, download-grpc-frames.ts): it answers the header-only call as the real one does
// (grpc-js on the site reads it), then serves the range calls faithfully, in protobuf layouts the coordinator never
// writes, or breaks gRPC's rules in one way each: what grpc-js would have refused, or mapped to a status, must be
// refused or mapped the same way by the site's own client.
import * as http2 from 'node:http2';
import { loadFedtuneProto } from '../proto/load';
import { pieceHashes } from '../proto/pieces';
import { dataChunks, tensorHeader } from '../proto/tensor-stream';
import type { NamedTensor } from '../proto/tensors';
import type { DownloadRequest__Output } from '../proto/generated/fedtune/v1/DownloadRequest';
import type { TensorFrame } from '../proto/generated/fedtune/v1/TensorFrame';

export type H2Fault =
  | 'none'
  /** Every chunk in a layout protobuf allows but the coordinator never writes: an unknown field first, or a decoy chunk the real one overrides. */
  | 'layouts'
  /** A message prefix announcing 2^31 - 1 bytes. */
  | 'oversize'
  /** A message flagged compressed on a call that accepted identity only. */
  | 'compressed'
  /** A refusal in the headers alone (trailers-only), its message percent-encoded. */
  | 'refused'
  /** The first call of each range refused RESOURCE_EXHAUSTED with a retry hint, the next served. */
  | 'busyOnce'
  /** HTTP 404, no gRPC status. */
  | 'http404'
  /** A 200 that is not gRPC (content-type text/html). */
  | 'html'
  /** Half a chunk message, then status OK. */
  | 'cutInside'
  /** Every chunk, no TensorFrame trailer, status OK. */
  | 'noTrailer'
  /** The header, then the stream reset (RST_STREAM INTERNAL_ERROR). */
  | 'reset';

/** One message as gRPC frames it. */
export function grpcMessage(message: Buffer, flag = 0): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = flag;
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

export async function startH2Hostile(
  adapter: NamedTensor[],
  chunkBytes: number,
  pieceBytes: number,
  fault: H2Fault,
): Promise<{ address: string; rangeCalls: () => number; stop(): Promise<void> }> {
  const method = loadFedtuneProto().fedtune.v1.Federation.service.DownloadAdapter;
  const enc = (f: TensorFrame): Buffer => method.responseSerialize(f);
  const data = Buffer.concat([...dataChunks(adapter, chunkBytes)]);
  const pieces = pieceHashes(adapter, pieceBytes);
  const header = { ...tensorHeader(adapter, chunkBytes), piece_bytes: pieceBytes, piece_sha256: pieces.sha256.map((h) => Buffer.from(h, 'hex')) };
  let rangeCalls = 0;
  const asked = new Set<number>();
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', (s) => {
    const body: Buffer[] = [];
    s.on('data', (d: Buffer) => body.push(d));
    s.on('error', () => undefined);
    s.on('end', () => {
      // A range the site cancelled (another range failed first) may be gone before its request is read.
      if (s.destroyed || s.closed) return;
      const r: DownloadRequest__Output = method.requestDeserialize(Buffer.concat(body).subarray(5));
      const grpc = { ':status': 200, 'content-type': 'application/grpc' };
      const send = (messages: Buffer[], trailers: http2.OutgoingHttpHeaders = { 'grpc-status': '0' }, head: http2.OutgoingHttpHeaders = grpc): void => {
        s.respond(head, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers(trailers));
        for (const m of messages) s.write(m);
        s.end();
      };
      const only = (h: http2.OutgoingHttpHeaders): void => s.respond({ ...grpc, ...h }, { endStream: true });
      if (r.header_only) return send([grpcMessage(enc({ header }))]);
      rangeCalls++;
      const off = Number(r.range_offset);
      const end = off + Number(r.range_length);
      const chunks: Buffer[] = [];
      for (let at = off; at < end; at += chunkBytes) chunks.push(data.subarray(at, Math.min(end, at + chunkBytes)));
      const head = grpcMessage(enc({ header }));
      const trailer = grpcMessage(enc({ trailer: { chunk_count: chunks.length, sha256: Buffer.alloc(0) } }));
      const plain = chunks.map((c) => grpcMessage(enc({ chunk: c })));
      switch (fault) {
        case 'none':
          return send([head, ...plain, trailer]);
        case 'layouts':
          return send([
            head,
            ...chunks.map((c, i) =>
              grpcMessage(
                i % 2 === 0
                  ? Buffer.concat([Buffer.from([0x78, 0x01]), enc({ chunk: c })]) // field 15 (unknown), varint 1
                  : Buffer.concat([enc({ chunk: Buffer.from('decoy') }), enc({ chunk: c })]), // the last chunk field wins
              ),
            ),
            trailer,
          ]);
        case 'oversize': {
          const p = Buffer.alloc(5);
          p.writeUInt32BE(0x7fffffff, 1);
          return send([head, p, Buffer.alloc(64)]);
        }
        case 'compressed':
          return send([head, grpcMessage(enc({ chunk: chunks[0] }), 1)]);
        case 'refused':
          return only({ 'grpc-status': '7', 'grpc-message': 'no%20access%20for%20this%20site' });
        case 'busyOnce':
          if (!asked.has(off)) {
            asked.add(off);
            return only({ 'grpc-status': '8', 'grpc-message': 'busy', 'retry-after-ms': '30' });
          }
          return send([head, ...plain, trailer]);
        case 'http404':
          s.respond({ ':status': 404 }, { endStream: true });
          return;
        case 'html':
          s.respond({ ':status': 200, 'content-type': 'text/html' });
          s.end('<html>not gRPC</html>');
          return;
        case 'cutInside':
          return send([head, plain[0].subarray(0, 100)]);
        case 'noTrailer':
          return send([head, ...plain]);
        case 'reset':
          s.respond(grpc);
          // destroy() resets at once (close() would end the stream first, then reset it).
          s.write(head, () => s.destroy(new Error('reset by the hostile peer')));
          return;
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    rangeCalls: () => rangeCalls,
    stop: () =>
      new Promise<void>((r) => {
        for (const s of sessions) s.destroy();
        server.close(() => r());
      }),
  };
}
