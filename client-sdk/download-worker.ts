// The worker thread behind client-sdk/download-receiver.ts: it lands a download's chunks in the tensors' own
// buffers and hashes them (SHA-256, node:crypto) while the main thread keeps reading the stream. The main thread
// has already checked every chunk against the header (sizes, order, total) before handing it over; the SHA-256 is
// compared there too, against the trailer. Nothing here trusts the peer more than that: a chunk that would write
// past the declared tensors is refused.
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

export type ToWorker =
  { op: 'begin'; id: number; sizes: number[] } | { op: 'chunks'; id: number; chunks: Handoff[] } | { op: 'finish'; id: number } | { op: 'abort'; id: number };

/** A chunk's bytes: `length` bytes of `buf` from `offset` (buf was moved, not copied, when it held only the chunk). */
export interface Handoff {
  readonly buf: ArrayBuffer;
  readonly offset: number;
  readonly length: number;
}

export type FromWorker = { id: number; digest: ArrayBuffer; buffers: ArrayBuffer[] } | { id: number; error: string };

interface Landing {
  readonly sizes: number[];
  readonly buffers: ArrayBuffer[];
  readonly hash: Hash;
  /** The tensor being filled and the bytes of it written so far. */
  tensor: number;
  filled: number;
}

const landings = new Map<number, Landing>();

function land(l: Landing, chunk: Uint8Array): void {
  l.hash.update(chunk);
  let src = chunk;
  while (src.length > 0) {
    // A tensor's buffer is made when its first byte arrives (an empty one's when it is passed): memory follows
    // what was received.
    if (l.buffers.length === l.tensor && l.tensor < l.sizes.length) l.buffers.push(new ArrayBuffer(l.sizes[l.tensor]));
    while (l.tensor < l.sizes.length && l.filled === l.sizes[l.tensor]) {
      l.tensor++;
      l.filled = 0;
      if (l.tensor < l.sizes.length) l.buffers.push(new ArrayBuffer(l.sizes[l.tensor]));
    }
    if (l.tensor >= l.sizes.length) throw new Error('chunk past the declared tensors');
    const take = Math.min(src.length, l.sizes[l.tensor] - l.filled);
    new Uint8Array(l.buffers[l.tensor], l.filled, take).set(src.subarray(0, take));
    l.filled += take;
    src = src.subarray(take);
  }
}

function handle(m: ToWorker): void {
  const l = landings.get(m.id);
  switch (m.op) {
    case 'begin':
      landings.set(m.id, { sizes: m.sizes, buffers: [], hash: createHash('sha256'), tensor: 0, filled: 0 });
      return;
    case 'chunks':
      if (l) for (const c of m.chunks) land(l, new Uint8Array(c.buf, c.offset, c.length));
      return;
    case 'abort':
      landings.delete(m.id);
      return;
    case 'finish': {
      if (!l) throw new Error(`no download ${m.id}`);
      landings.delete(m.id);
      // Zero-sized tensors after the last byte, and all of them in an empty stream, still get their (empty) buffer.
      while (l.buffers.length < l.sizes.length) l.buffers.push(new ArrayBuffer(l.sizes[l.buffers.length]));
      const digest = l.hash.digest();
      const d = digest.buffer.slice(digest.byteOffset, digest.byteOffset + digest.length);
      const reply: FromWorker = { id: m.id, digest: d, buffers: l.buffers };
      parentPort!.postMessage(reply, [d, ...l.buffers]);
      return;
    }
  }
}

parentPort?.on('message', (m: ToWorker) => {
  try {
    handle(m);
  } catch (e) {
    landings.delete(m.id);
    const reply: FromWorker = { id: m.id, error: (e as Error).message };
    parentPort!.postMessage(reply);
  }
});
