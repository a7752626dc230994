// The sealing thread: the crypto of a large sealed upload, off the thread that runs gRPC (seal-offload.ts is its
// main-thread side). For a site it hashes the ciphertext chunks the main thread has just sealed (the signed
// header names their SHA-256, so it must be known before the first byte is sent): sealing chunk i+1 and hashing
// chunk i then run at once. For the coordinator it opens each chunk (ChaCha20-Poly1305 and the ciphertext's
// SHA-256, chunk-opener.ts, with the same refusals as on the main thread) while the main thread reads the next.
// Buffers move between the threads, never copied twice: each comes back with the answer.
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { ChunkOpener, type ChunkKeys } from './chunk-opener';
import { ProtocolError } from '../errors';

export type ToSealThread =
  | { op: 'hash'; id: number; buf: ArrayBuffer; tag: Uint8Array; head: Uint8Array | undefined }
  | { op: 'begin'; id: number; keys: ChunkKeys }
  | { op: 'open'; id: number; buf: ArrayBuffer; offset: number; length: number }
  | { op: 'digest'; id: number }
  | { op: 'end'; id: number };

export type FromSealThread =
  | { id: number; op: 'hashed'; buf: ArrayBuffer }
  | { id: number; op: 'opened'; plain: ArrayBuffer; buf: ArrayBuffer; offset: number; length: number }
  | { id: number; op: 'digest'; digest: Uint8Array; opened: number }
  | { id: number; op: 'error'; code: number | undefined; message: string };

const hashes = new Map<number, Hash>();
const openers = new Map<number, ChunkOpener>();
/** Uploads refused here: their later messages are dropped (the main thread is told once). */
const failed = new Set<number>();

function handle(m: ToSealThread): FromSealThread | undefined {
  if (m.op === 'end') {
    hashes.delete(m.id);
    openers.get(m.id)?.wipe();
    openers.delete(m.id);
    failed.delete(m.id);
    return undefined;
  }
  if (failed.has(m.id)) return undefined;
  if (m.op === 'hash') {
    let h = hashes.get(m.id);
    if (!h) hashes.set(m.id, (h = createHash('sha256')));
    const ct = new Uint8Array(m.buf);
    h.update(ct).update(m.tag);
    if (!m.head) return { id: m.id, op: 'hashed', buf: m.buf };
    // The message as it goes on the wire (head = the chunk field's key and length): the copy the serializer
    // would make on the main thread, made here instead.
    const wire = Buffer.allocUnsafeSlow(m.head.length + ct.length + m.tag.length); // its own buffer, every byte set below
    wire.set(m.head);
    wire.set(ct, m.head.length);
    wire.set(m.tag, m.head.length + ct.length);
    return { id: m.id, op: 'hashed', buf: wire.buffer as ArrayBuffer };
  }
  if (m.op === 'begin') {
    openers.set(m.id, new ChunkOpener(m.keys));
    return undefined;
  }
  if (m.op === 'open') {
    const o = openers.get(m.id);
    if (!o) throw new Error(`no upload ${m.id} here`);
    const p = o.open(new Uint8Array(m.buf, m.offset, m.length));
    // node:crypto's output owns its whole ArrayBuffer (a fresh allocation of exactly the plaintext), so it moves.
    const plain = p.byteOffset === 0 && p.length === p.buffer.byteLength ? p.buffer : Uint8Array.from(p).buffer;
    return { id: m.id, op: 'opened', plain: plain as ArrayBuffer, buf: m.buf, offset: m.offset, length: m.length };
  }
  const o = openers.get(m.id);
  if (o) return { id: m.id, op: 'digest', digest: o.finish(), opened: o.chunksOpened };
  const h = hashes.get(m.id);
  hashes.delete(m.id);
  return { id: m.id, op: 'digest', digest: h ? h.digest() : createHash('sha256').digest(), opened: 0 };
}

parentPort!.on('message', (m: ToSealThread) => {
  let out: FromSealThread | undefined;
  try {
    out = handle(m);
  } catch (e) {
    failed.add(m.id);
    openers.get(m.id)?.wipe();
    out = { id: m.id, op: 'error', code: e instanceof ProtocolError ? e.code : undefined, message: (e as Error).message };
  }
  if (!out) return;
  const moved = out.op === 'hashed' ? [out.buf] : out.op === 'opened' ? [out.plain, out.buf] : [];
  parentPort!.postMessage(out, moved);
});
