// A download's receiving end, split over two threads. The main thread reads the gRPC stream and checks every frame
// against the header before anything else happens (TensorStreamDecoder without retention: chunk sizes, order,
// the declared total, which was bounded before any memory is taken); it then hands the chunk's bytes to a worker
// thread (download-worker.ts) that lands them in the tensors' buffers and hashes them. Landing a 64 MiB adapter
// in fresh memory and hashing it took most of a download's time on the thread that also runs gRPC; now it
// overlaps with the transfer. At the trailer the main thread checks the chunk count and compares the worker's
// SHA-256 with the trailer's, with the same refusals (DATA_LOSS) as the single-thread decoder.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ProtocolError, status } from '../proto/errors';
import type { StreamTrailer__Output } from '../proto/generated/fedtune/v1/StreamTrailer';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import { TensorStreamDecoder } from '../proto/tensor-stream';
import { ownsMessageBuffer } from '../proto/message-buffer';
import { numel, type NamedTensor } from '../proto/tensors';
import type { FromWorker, Handoff, ToWorker } from './download-worker';

/** Bytes queued before they go to the worker in one message. */
const HANDOFF_BYTES = 4 << 20;

type Landed = Extract<FromWorker, { digest: ArrayBuffer }>;
interface Pending {
  resolve: (r: Landed) => void;
  reject: (e: Error) => void;
}

let worker: Worker | undefined;
const pending = new Map<number, Pending>();
let nextId = 1;

/** The process's one landing worker, started on the first download; it holds the process open only while in use. */
function landingWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(path.join(__dirname, 'download-worker.js'));
  const fail = (e: Error): void => {
    if (worker === w) worker = undefined;
    for (const p of pending.values()) p.reject(new Error(`the download worker stopped: ${e.message}`));
    pending.clear();
  };
  w.on('message', (m: FromWorker) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (pending.size === 0) w.unref();
    if ('error' in m) p.reject(new Error(`download worker: ${m.error}`));
    else p.resolve(m);
  });
  w.on('error', fail);
  w.on('exit', (code) => fail(new Error(`exit code ${code}`)));
  worker = w;
  return w;
}

export class DownloadReceiver {
  private readonly framing: TensorStreamDecoder;
  private readonly sizes: number[];
  private readonly id = nextId++;
  private readonly w: Worker;
  private readonly landed: Promise<Landed>;
  private chunks = 0;
  private done = false;
  private queue: Handoff[] = [];
  private queued = 0;

  constructor(header: TensorHeader__Output | null | undefined, maxBytes: number) {
    // Framing checks only (no copy, no hash here): the header is validated, and bounded by maxBytes, first.
    this.framing = new TensorStreamDecoder(header, { maxBytes, requireFinite: false, retain: false, authenticated: true });
    this.sizes = this.framing.specs.map((s) => numel(s.shape) * 4);
    this.w = landingWorker();
    this.landed = new Promise<Landed>((resolve, reject) => pending.set(this.id, { resolve, reject }));
    this.landed.catch(() => undefined); // observed in finish(); a failed download may never get there
    this.w.ref();
    this.post({ op: 'begin', id: this.id, sizes: this.sizes });
  }

  private post(m: ToWorker, transfer: ArrayBuffer[] = []): void {
    this.w.postMessage(m, transfer);
  }

  push(chunk: Buffer): void {
    this.framing.push(chunk); // throws the stream's refusal before the bytes go anywhere
    this.chunks++;
    // Moved without a copy when it owns its buffer (proto/message-buffer.ts); a chunk under 4 KiB is copied.
    if (ownsMessageBuffer(chunk) && chunk.length >= 4096) {
      this.queue.push({ buf: chunk.buffer as ArrayBuffer, offset: chunk.byteOffset, length: chunk.length });
    } else {
      this.queue.push({ buf: new Uint8Array(chunk).buffer, offset: 0, length: chunk.length });
    }
    this.queued += chunk.length;
    if (this.queued >= HANDOFF_BYTES) this.flush();
  }

  /** Hands the queued chunks to the worker in one message: waking it per 1 MiB chunk cost more than the move. */
  private flush(): void {
    if (this.queue.length === 0) return;
    const chunks = this.queue;
    this.queue = [];
    this.queued = 0;
    this.post(
      { op: 'chunks', id: this.id, chunks },
      chunks.map((c) => c.buf),
    );
  }

  /** Completes the stream; DATA_LOSS when it was cut short or does not match its trailer. */
  async finish(trailer: StreamTrailer__Output | null | undefined): Promise<{ tensors: NamedTensor[]; digest: Buffer }> {
    this.framing.finishStreamed(); // DATA_LOSS: stream truncated
    if (!trailer) throw new ProtocolError(status.DATA_LOSS, 'stream ended without its trailer');
    if (trailer.chunk_count !== this.chunks) {
      throw new ProtocolError(status.DATA_LOSS, `trailer counts ${trailer.chunk_count} chunks; ${this.chunks} arrived`);
    }
    this.done = true;
    this.flush();
    this.post({ op: 'finish', id: this.id });
    const r = await this.landed;
    const digest = Buffer.from(r.digest);
    if (!trailer.sha256 || !digest.equals(trailer.sha256)) throw new ProtocolError(status.DATA_LOSS, 'stream SHA-256 does not match its trailer');
    const tensors = this.framing.specs.map((s, i): NamedTensor => ({ name: s.name, dtype: 'float32', shape: s.shape, data: new Float32Array(r.buffers[i]) }));
    return { tensors, digest };
  }

  /** Drops what the worker holds for a download that will not finish. */
  abort(): void {
    if (this.done || !pending.has(this.id)) return;
    this.done = true;
    pending.delete(this.id);
    if (pending.size === 0) this.w.unref();
    this.post({ op: 'abort', id: this.id });
  }
}
