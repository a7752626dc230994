// DownloadAdapter on the site's side: a global version (or an evaluation task's candidate) as a chunked tensor
// stream: header, chunks, trailer with the SHA-256 (proto/tensor-stream.ts), received by download-receiver.ts;
// or, for a version that lists piece hashes, its header alone, then its pieces over several range calls
// (download-ranges.ts).
// Anything out of order, a broken stream or a candidate that does not hash to what its task names is refused; the
// call is then cancelled.
import { status } from '@grpc/grpc-js';
import type { FederationClient as GrpcFederationClient } from '../proto/generated/fedtune/v1/Federation';
import type { TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import { headerPieces } from '../proto/pieces';
import { ProtocolError } from '../proto/errors';
import type { NamedTensor } from '../proto/tensors';
import { DownloadReceiver } from './download-receiver';
import { downloadRanges, type ParallelDownloads } from './download-ranges';

/** The largest download a site takes (the header is refused RESOURCE_EXHAUSTED beyond it, before any memory). */
const MAX_DOWNLOAD_BYTES = 2 ** 32;

/**
 * A site's channel options for downloads. HTTP/2's default receive window is 64 KiB: the coordinator could send
 * 64 KiB of a version, then wait a round trip for the site's WINDOW_UPDATE, a thousand times for a 64 MiB
 * adapter. 16 MiB lets sixteen 1 MiB chunks be in flight; it is also the most a connection buffers unread.
 */
export const SITE_CHANNEL_OPTIONS = { 'grpc-node.flow_control_window': 16 << 20 } as const;

export function downloadAdapter(
  rpc: GrpcFederationClient,
  token: string,
  version: number,
  candidate?: { evaluationTaskId: string; sha256: string },
  /** SCAFFOLD: the version's server control variate c instead of its adapter. */
  controlVariate = false,
  /** Several range calls on several threads when the version lists piece hashes (download-ranges.ts). */
  parallel?: ParallelDownloads,
): Promise<NamedTensor[]> {
  // A committed adapter may come in ranges: ask for its header alone. A coordinator or version without piece
  // hashes answers with the whole stream, read here as before.
  const ranged = parallel !== undefined && parallel.streams > 1 && !candidate && !controlVariate;
  return new Promise((resolve, reject) => {
    const call = rpc.DownloadAdapter({
      session_token: token,
      version,
      evaluation_task_id: candidate?.evaluationTaskId ?? '',
      control_variate: controlVariate,
      header_only: ranged,
    });
    let rx: DownloadReceiver | undefined;
    /** The header of a header-only answer, whose ranges are fetched once the call ends. */
    let planned: { header: TensorHeader__Output; pieces: { bytes: number; sha256: Buffer[] } } | undefined;
    let settled = false;
    const fail = (e: unknown): void => {
      if (settled) return;
      settled = true;
      rx?.abort();
      call.cancel();
      reject(e);
    };
    const complete = async (trailer: TensorFrame__Output['trailer']): Promise<void> => {
      const { tensors, digest } = await rx!.finish(trailer);
      const got = digest.toString('hex');
      if (candidate && got !== candidate.sha256)
        throw new ProtocolError(status.DATA_LOSS, `evaluation candidate hashes to ${got}; the task names ${candidate.sha256}`);
      if (settled) return;
      settled = true;
      resolve(tensors);
    };
    let finishing = false;
    call.on('data', (f: TensorFrame__Output) => {
      try {
        if (finishing) throw new ProtocolError(status.INVALID_ARGUMENT, 'a frame after the trailer');
        if (planned) throw new ProtocolError(status.INVALID_ARGUMENT, 'a frame after a header-only answer');
        if (f.header) {
          if (rx) throw new ProtocolError(status.INVALID_ARGUMENT, 'a second header in one download');
          // The coordinator answers header_only with the header alone for two pieces or more (else the whole stream).
          const pieces = ranged ? headerPieces(f.header) : null;
          if (pieces && pieces.sha256.length >= 2) planned = { header: f.header, pieces };
          else rx = new DownloadReceiver(f.header, MAX_DOWNLOAD_BYTES);
        } else if (f.frame === 'chunk' && f.chunk) {
          if (!rx) throw new ProtocolError(status.INVALID_ARGUMENT, 'chunk before header');
          rx.push(f.chunk);
        } else if (f.trailer) {
          if (!rx) throw new ProtocolError(status.INVALID_ARGUMENT, 'trailer before header');
          finishing = true;
          complete(f.trailer).catch(fail);
        }
      } catch (e) {
        fail(e);
      }
    });
    call.on('error', fail);
    call.on('end', () => {
      if (planned && !settled) {
        downloadRanges(parallel!, token, version, planned.header, planned.pieces, MAX_DOWNLOAD_BYTES).then((tensors) => {
          if (settled) return;
          settled = true;
          resolve(tensors);
        }, fail);
      } else if (!finishing) fail(new ProtocolError(status.DATA_LOSS, 'download ended without its trailer'));
    });
  });
}
