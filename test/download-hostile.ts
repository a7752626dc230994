// A scripted coordinator for parallel-download tests (download-parallel.test.ts): a real grpc-js server with the
// real Federation service, whose DownloadAdapter announces an adapter's true piece hashes, then serves the range
// calls faithfully ('none') or forges or tampers with them in one way each.
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { serveFederation } from './harness';
import { pieceHashes } from '../proto/pieces';
import { dataChunks, tensorHeader } from '../proto/tensor-stream';
import type { NamedTensor } from '../proto/tensors';
import type { DownloadRequest__Output } from '../proto/generated/fedtune/v1/DownloadRequest';
import type { TensorFrame } from '../proto/generated/fedtune/v1/TensorFrame';

export type Tamper = 'none' | 'flip' | 'short' | 'extra' | 'count' | 'noTrailer' | 'header' | 'twoHeaders';

export async function startHostileDownloads(
  adapter: NamedTensor[],
  chunkBytes: number,
  pieceBytes: number,
  tamper: Tamper,
): Promise<{ address: string; stop(): Promise<void> }> {
  const data = Buffer.concat([...dataChunks(adapter, chunkBytes)]);
  const pieces = pieceHashes(adapter, pieceBytes);
  const header = { ...tensorHeader(adapter, chunkBytes), piece_bytes: pieceBytes, piece_sha256: pieces.sha256.map((h) => Buffer.from(h, 'hex')) };
  const { server, address } = await serveFederation({
    DownloadAdapter(call: grpc.ServerWritableStream<DownloadRequest__Output, TensorFrame>) {
      const r = call.request;
      if (r.header_only && pieces.sha256.length >= 2) {
        call.write({ header });
        return void call.end();
      }
      if (Number(r.range_length) === 0) {
        // The whole stream, as a coordinator sends a version of one piece (or to a site that asked for no range).
        call.write({ header });
        const chunks = [...dataChunks(adapter, chunkBytes)];
        for (const c of chunks) call.write({ chunk: c });
        call.write({ trailer: { chunk_count: chunks.length, sha256: createHash('sha256').update(data).digest() } });
        return void call.end();
      }
      // A range's header that differs from the one the download was planned from.
      call.write({ header: tamper === 'header' ? { ...header, chunk_bytes: chunkBytes / 2 } : header });
      if (tamper === 'twoHeaders') call.write({ header });
      const off = Number(r.range_offset);
      const end = off + Number(r.range_length);
      let n = 0;
      for (let at = off; at < end; at += chunkBytes) {
        let c = Buffer.from(data.subarray(at, Math.min(end, at + chunkBytes)));
        if (tamper === 'flip' && at <= 5 * pieceBytes + 10 && 5 * pieceBytes + 10 < at + c.length) c[5 * pieceBytes + 10 - at] ^= 1;
        if (tamper === 'short' && at === 0) c = c.subarray(0, c.length - 4);
        call.write({ chunk: c });
        n++;
      }
      if (tamper === 'extra') call.write({ chunk: Buffer.alloc(16) });
      if (tamper !== 'noTrailer') call.write({ trailer: { chunk_count: tamper === 'count' ? n + 1 : n, sha256: Buffer.alloc(0) } });
      call.end();
    },
  });
  return { address, stop: () => new Promise<void>((r) => server.tryShutdown(() => r())) };
}
