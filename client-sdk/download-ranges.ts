// A parallel download (proto/pieces.ts), the main thread's part: given the header of a version that lists piece
// hashes, it splits the stream into K ranges of whole pieces and has K worker threads (download-range-worker.ts)
// receive them, each over its own channel, into one shared buffer, each checking its pieces. One grpc-js stream
// on one thread, and one SHA-256 on one thread, each move a 64 MiB adapter at well under raw TCP's speed; K of
// them side by side do not share that bound.
//
// The tensors are handed over only when every range passed; the first range to fail cancels the others and its
// refusal (the same ProtocolError the one-stream download raises, or DATA_LOSS naming the piece) is the download's.
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type * as grpc from '@grpc/grpc-js';
import { ProtocolError, type status } from '../proto/errors';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import { planRanges } from '../proto/pieces';
import { TensorStreamDecoder, type TensorSpecOut } from '../proto/tensor-stream';
import { numel, type NamedTensor } from '../proto/tensors';
import { tlsMaterial } from './tls';
import { CopyOut, type Part } from './download-copy-out';
import { h2Eligible } from './download-range-h2';
import type { ChannelSpec, CopyJob, FromRangeWorker, RangeJob, ToRangeWorker } from './download-range-worker';

export type { ChannelSpec } from './download-range-worker';

/** What a site needs to download in parallel: how many streams, and how its worker threads reach the coordinator. */
export interface ParallelDownloads {
  readonly streams: number;
  readonly channel: ChannelSpec;
}

/**
 * Streams per download when the site does not say: one per two cores, at most 8 (one on a 2-core host, where the
 * threads would only take turns). On an idle 16-core host 8 range streams with per-piece hashing received 64 MiB
 * fastest of 1, 2, 4, 8 and 12 (bench/download-parallel-probe.ts; bench/RESULTS.md).
 */
export function defaultDownloadStreams(cores = os.availableParallelism()): number {
  return Math.max(1, Math.min(8, Math.floor(cores / 2)));
}

/** A site's parallel downloads from its options; undefined when one stream it is (see downloadStreams). */
export function parallelDownloads(
  o: { address: string; credentials?: grpc.ChannelCredentials; downloadStreams?: number; rangeTransport?: 'http2' | 'grpc-js' },
  options: Record<string, unknown>,
): ParallelDownloads | undefined {
  const streams = o.downloadStreams ?? defaultDownloadStreams();
  if (!(streams > 1)) return undefined;
  const tls = o.credentials ? tlsMaterial(o.credentials) : undefined;
  if (o.credentials && !tls) return undefined;
  // Only what crosses to a thread (numbers and strings); an option object of another kind stays with the main channel.
  const plain = Object.fromEntries(Object.entries(options).filter(([, v]) => typeof v === 'number' || typeof v === 'string')) as Record<
    string,
    string | number
  >;
  const channel: ChannelSpec = { address: o.address, ...(tls ? { tls } : {}), options: plain };
  // The workers' own HTTP/2 client where it makes the channel as grpc-js would (download-range-h2.ts); else grpc-js.
  // Asking for grpc-js keeps it; asking for http2 only takes effect where that client can make the channel.
  const eligible = h2Eligible(channel) && Object.keys(plain).length === Object.keys(options).length;
  const transport = eligible && o.rangeTransport !== 'grpc-js' ? 'http2' : 'grpc-js';
  return { streams: Math.min(streams, MAX_STREAMS), channel: { ...channel, transport } };
}

/** Most range calls per download: the coordinator's default bound per site (transport.maxRangeCallsPerSite). */
export const MAX_STREAMS = 16;

/** Parallel downloads and range calls begun by this process (for tests and the bench's report). */
export const rangeStats = { downloads: 0, ranges: 0, landingsReused: 0, retries: 0 };

interface Waiting {
  resolve: (buffers: ArrayBuffer[]) => void;
  reject: (e: Error) => void;
}

/** The process's range workers, started as needed; they hold the process open only while a range is in flight. */
const workers: (Worker | undefined)[] = [];
const inFlight = new Map<Worker, Set<number>>();
const waiting = new Map<number, Waiting>();
let nextId = 1;

function worker(i: number): Worker {
  const have = workers[i];
  if (have) return have;
  const w = new Worker(path.join(__dirname, 'download-range-worker.js'));
  const mine = new Set<number>();
  inFlight.set(w, mine);
  const gone = (e: Error): void => {
    if (workers[i] === w) workers[i] = undefined;
    inFlight.delete(w);
    for (const id of mine) {
      waiting.get(id)?.reject(new Error(`a download worker stopped: ${e.message}`));
      waiting.delete(id);
    }
  };
  w.on('message', (m: FromRangeWorker) => {
    mine.delete(m.id);
    if (mine.size === 0) w.unref();
    const p = waiting.get(m.id);
    waiting.delete(m.id);
    if (!p) return;
    if (m.ok) {
      rangeStats.retries += m.retries ?? 0;
      p.resolve(m.buffers ?? []);
    } else p.reject(new ProtocolError(m.code as status, m.message));
  });
  w.on('error', gone);
  w.on('exit', (code) => gone(new Error(`exit code ${code}`)));
  workers[i] = w;
  return w;
}

function post(w: Worker, m: ToRangeWorker, transfer: ArrayBuffer[] = []): void {
  if (m.op !== 'cancel') {
    inFlight.get(w)?.add(m.id);
    w.ref();
  }
  w.postMessage(m, transfer);
}

/**
 * Downloads `version` over `p.streams` range calls, given its header (already checked to list its pieces; bounded
 * by `maxBytes` here before any memory is taken). Resolves with its tensors; rejects with the first range's refusal.
 */
export async function downloadRanges(
  p: ParallelDownloads,
  token: string,
  version: number,
  header: TensorHeader__Output,
  pieces: { bytes: number; sha256: Buffer[] },
  maxBytes: number,
): Promise<NamedTensor[]> {
  // The header's own checks (shapes, names, total against the tensors, the size bound) before the buffer exists.
  const specs = new TensorStreamDecoder(header, { maxBytes, requireFinite: false, retain: false, authenticated: true }).specs;
  const total = Number(header.total_bytes);
  const land = takeLanding(total);
  try {
    return await receiveInto(p, land, token, version, header, pieces, specs, total);
  } finally {
    giveBackLanding(land);
  }
}

/**
 * The landing buffer of the last parallel download, kept for the next one of the same size (a site downloads a
 * version of the same adapter every round). A fresh buffer's pages are faulted in and zeroed by the kernel as the
 * workers first write them: measured on the 2-core box, a copy into fresh memory took 50-60 ms per 64 MiB against
 * 8 ms into memory already touched. Every byte of a reused buffer is overwritten by the ranges (they tile the
 * stream) and checked against its piece hash before it is read, so nothing of the last download shows through.
 * Bound: one buffer, the size of the last parallel download, held while the process lives (the tensors are
 * copied out of it, so it is never handed to the caller).
 */
let spare: SharedArrayBuffer | undefined;

function takeLanding(bytes: number): SharedArrayBuffer {
  const s = spare;
  if (s && s.byteLength === bytes) {
    spare = undefined;
    rangeStats.landingsReused++;
    return s;
  }
  return new SharedArrayBuffer(bytes);
}

function giveBackLanding(b: SharedArrayBuffer): void {
  spare = b;
}

async function receiveInto(
  p: ParallelDownloads,
  land: SharedArrayBuffer,
  token: string,
  version: number,
  header: TensorHeader__Output,
  pieces: { bytes: number; sha256: Buffer[] },
  specs: readonly TensorSpecOut[],
  total: number,
): Promise<NamedTensor[]> {
  // No more ranges than the coordinator takes from one site at once (it says so in the header).
  const bound = header.max_range_calls > 0 ? header.max_range_calls : p.streams;
  const ranges = planRanges(total, pieces.bytes, Math.min(p.streams, bound));
  rangeStats.downloads++;
  rangeStats.ranges += ranges.length;
  const ids: { id: number; w: Worker }[] = ranges.map((_, i) => ({ id: nextId++, w: worker(i) }));
  // Each tensor gets its own (unshared) memory, as from the one-stream download: what a trainer or a GPU upload
  // is handed stays an ordinary Float32Array. It is made here while the workers receive (touchedBuffers), and a
  // tensor is copied into it by a worker as soon as the ranges holding its bytes are done (download-copy-out.ts),
  // moved to that worker and back, never copied.
  const parts: Part[] = [];
  for (const s of specs) parts.push({ offset: parts.length ? parts[parts.length - 1].offset + parts[parts.length - 1].bytes : 0, bytes: numel(s.shape) * 4 });
  const copy = new CopyOut(parts, ranges, (w, share, into) => ask(ids[w].w, { op: 'copy', id: nextId++, land, parts: share.map((i) => parts[i]), into }, into));
  const jobs = ranges.map((r, i) => {
    const job: RangeJob = {
      op: 'range',
      id: ids[i].id,
      channel: p.channel,
      token,
      version,
      offset: r.offset,
      length: r.length,
      totalBytes: total,
      chunkBytes: header.chunk_bytes,
      pieceBytes: pieces.bytes,
      firstPiece: r.first,
      hashes: Buffer.concat(pieces.sha256.slice(r.first, r.first + r.count)),
      land,
    };
    return ask(ids[i].w, job).then(() => copy.rangeDone(i));
  });
  const targets = touchedBuffers(
    parts.map((x) => x.bytes),
    (i, b) => copy.bufferReady(i, b),
    () => copy.flush(),
  );
  let buffers: ArrayBuffer[];
  try {
    await Promise.all([...jobs, targets]);
    buffers = await copy.finish();
  } catch (e) {
    // The others are cancelled; each still answers (CANCELLED), so nothing is left waiting.
    for (const { id, w } of ids) if (waiting.has(id)) post(w, { op: 'cancel', id });
    const copies = copy.stop(); // nothing more is sent to copy
    await Promise.allSettled([...jobs, targets, copies]);
    throw e;
  }
  return specs.map((s, i): NamedTensor => ({ name: s.name, dtype: 'float32', shape: s.shape, data: new Float32Array(buffers[i]) }));
}

/**
 * Memory of `sizes` bytes each, its pages written once, so the kernel maps them now: made on this thread while the
 * workers receive (it is otherwise idle then), so that the copy-out writes into memory already mapped. Mapping fresh
 * pages is most of a copy's cost (50-60 ms per 64 MiB against 8 ms into touched memory on the 2-core box), and
 * eight workers mapping at once also contend for the process's page tables. It yields every 8 MiB, so the
 * workers' answers are not held up; after each 8 MiB, `batch` hands what is ready on to be copied.
 */
async function touchedBuffers(sizes: readonly number[], ready: (i: number, b: ArrayBuffer) => void, batch: () => void): Promise<void> {
  let since = 0;
  for (let k = 0; k < sizes.length; k++) {
    const n = sizes[k];
    const b = new ArrayBuffer(n);
    const u = new Uint8Array(b);
    for (let i = 0; i < n; i += 4096) u[i] = 0;
    ready(k, b);
    since += n;
    if (since >= 8 << 20) {
      since = 0;
      batch();
      await new Promise<void>((r) => setImmediate(r));
    }
  }
  batch();
}

/** Posts one job to `w` (moving `transfer` to it); resolves with what it moved back. */
function ask(w: Worker, job: RangeJob | CopyJob, transfer: ArrayBuffer[] = []): Promise<ArrayBuffer[]> {
  return new Promise<ArrayBuffer[]>((resolve, reject) => {
    waiting.set(job.id, { resolve, reject });
    post(w, job, transfer);
  });
}
