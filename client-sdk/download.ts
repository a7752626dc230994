// DownloadAdapter on the site's side: a global version (or an evaluation task's candidate) as a chunked tensor
// stream: header, chunks, trailer with the SHA-256 (proto/tensor-stream.ts). Anything out of order, a broken
// stream or a candidate that does not hash to what its task names is refused; the call is then cancelled.
import { status } from '@grpc/grpc-js';
import type { FederationClient as GrpcFederationClient } from '../proto/generated/fedtune/v1/Federation';
import type { TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import { ProtocolError } from '../proto/errors';
import { TensorStreamDecoder } from '../proto/tensor-stream';
import type { NamedTensor } from '../proto/tensors';

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
): Promise<NamedTensor[]> {
  return new Promise((resolve, reject) => {
    const call = rpc.DownloadAdapter({ session_token: token, version, evaluation_task_id: candidate?.evaluationTaskId ?? '', control_variate: controlVariate });
    let dec: TensorStreamDecoder | undefined;
    let settled = false;
    const fail = (e: unknown): void => {
      if (settled) return;
      settled = true;
      call.cancel();
      reject(e);
    };
    call.on('data', (f: TensorFrame__Output) => {
      try {
        if (f.header) {
          if (dec) throw new ProtocolError(status.INVALID_ARGUMENT, 'a second header in one download');
          dec = new TensorStreamDecoder(f.header, { maxBytes: 2 ** 32, requireFinite: false });
        } else if (f.frame === 'chunk' && f.chunk) {
          if (!dec) throw new ProtocolError(status.INVALID_ARGUMENT, 'chunk before header');
          dec.push(f.chunk);
        } else if (f.trailer) {
          if (!dec) throw new ProtocolError(status.INVALID_ARGUMENT, 'trailer before header');
          const tensors = dec.finish(f.trailer);
          const got = dec.digest?.toString('hex');
          if (candidate && got !== candidate.sha256)
            throw new ProtocolError(status.DATA_LOSS, `evaluation candidate hashes to ${got ?? '(none)'}; the task names ${candidate.sha256}`);
          settled = true;
          resolve(tensors);
        }
      } catch (e) {
        fail(e);
      }
    });
    call.on('error', fail);
    call.on('end', () => fail(new ProtocolError(status.DATA_LOSS, 'download ended without its trailer')));
  });
}
