// The identity of a base model is the SHA-256 of its safetensors file: clients and coordinator compare it
// before training so that an adapter is never trained or merged against different base weights.
import { createHash } from 'crypto';
import { createReadStream } from 'fs';

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** SHA-256 (hex) of a file, streamed so multi-GB checkpoints need not fit in memory twice. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => h.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}
