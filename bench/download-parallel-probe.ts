// A probe for issue 8's download goal (gRPC transfer >= 50% of raw TCP loopback): can several concurrent grpc-js
// range streams, each received on its own worker thread, move 64 MiB faster than one stream on the main thread?
// Two processes, as deployed: a child process serves raw TCP and a grpc-js server with the real Federation
// service's DownloadAdapter (the real TensorFrame encoding, frames pre-encoded once as the coordinator does), whose
// request names a byte range (carried in evaluation_task_id as "offset:length" for this probe only). The parent
// receives, interleaved, median of `reps`:
//   tcp          raw TCP, a reader that only counts (the goal's denominator)
//   grpc1        one grpc-js stream on the main thread, counting chunk bytes
//   mainK        K = 2, 4, 8 range streams on the main thread (one channel each), counting: connections alone
//   wK-count     K range streams, each on its own worker thread with its own grpc-js channel, counting
//   wK-hash      the same, each worker landing its chunks into one SharedArrayBuffer and hashing per piece (SHA-256)
// Usage: node dist/bench/download-parallel-probe.js [--out FILE] [--reps N] [--mib N] [--piece-mib N] [--ks 1,2,4,8]
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import * as grpc from '@grpc/grpc-js';
import { SITE_CHANNEL_OPTIONS } from '../client-sdk/download';
import { EncodedFrame, preEncodedDownloads } from '../coordinator/download-image';
import type { TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import { loadFedtuneProto } from '../proto/load';
import { tcpReceive, tcpSender } from './loopback-arms';

const CHUNK = 1 << 20;
const now = (): number => Number(process.hrtime.bigint()) / 1e9;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};

/** One range call: `length` bytes from `offset`, counted; with `land`, copied there and hashed per piece. */
interface RangeJob {
  port: number;
  offset: number;
  length: number;
  land?: SharedArrayBuffer;
  pieceBytes: number;
}

function client(port: number): InstanceType<ReturnType<typeof loadFedtuneProto>['fedtune']['v1']['Federation']> {
  const Ctor = loadFedtuneProto().fedtune.v1.Federation;
  // Its own connection, whatever else this thread has open.
  return new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { ...SITE_CHANNEL_OPTIONS, 'grpc.use_local_subchannel_pool': 1 });
}

/** Receives one range on `rpc`; resolves with the piece digests (empty when not landing). */
function receiveRange(rpc: ReturnType<typeof client>, job: RangeJob): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const call = rpc.DownloadAdapter({ session_token: 'probe', version: 0, evaluation_task_id: `${job.offset}:${job.length}`, control_variate: false });
    let n = 0;
    const dst = job.land ? new Uint8Array(job.land) : undefined;
    const digests: string[] = [];
    let hash: Hash | undefined;
    let inPiece = 0;
    call.on('data', (f: TensorFrame__Output) => {
      const c = f.chunk;
      if (!c) return;
      if (dst) {
        dst.set(c, job.offset + n);
        let src: Buffer = c;
        while (src.length > 0) {
          hash ??= createHash('sha256');
          const take = Math.min(src.length, job.pieceBytes - inPiece);
          hash.update(src.subarray(0, take));
          inPiece += take;
          src = src.subarray(take);
          if (inPiece === job.pieceBytes) {
            digests.push(hash.digest('hex'));
            hash = undefined;
            inPiece = 0;
          }
        }
      }
      n += c.length;
    });
    call.on('error', reject);
    call.on('end', () => {
      if (hash) digests.push(hash.digest('hex'));
      if (n === job.length) resolve(digests);
      else reject(new Error(`range got ${n} of ${job.length} bytes`));
    });
  });
}

// ---- the worker thread: one grpc-js client per port, one range at a time ----
function workerMain(): void {
  const clients = new Map<number, ReturnType<typeof client>>();
  parentPort!.on('message', (job: RangeJob) => {
    let rpc = clients.get(job.port);
    if (!rpc) clients.set(job.port, (rpc = client(job.port)));
    receiveRange(rpc, job).then(
      (digests) => parentPort!.postMessage({ ok: true, pieces: digests.length }),
      (e: Error) => parentPort!.postMessage({ ok: false, error: e.message }),
    );
  });
}

// ---- the sending process ----
async function serveMain(bytes: number): Promise<void> {
  const Federation = loadFedtuneProto().fedtune.v1.Federation;
  const encode = Federation.service.DownloadAdapter.responseSerialize as (f: unknown) => Buffer;
  const data = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
  // Every chunk's TensorFrame encoded once, as the coordinator's download image holds them.
  const frames: EncodedFrame[] = [];
  for (let o = 0; o < bytes; o += CHUNK) frames.push(new EncodedFrame(encode({ chunk: data.subarray(o, Math.min(bytes, o + CHUNK)) })));
  const server = new grpc.Server({ 'grpc.max_concurrent_streams': 1_000_000 });
  server.addService(preEncodedDownloads(Federation.service), {
    DownloadAdapter(call: grpc.ServerWritableStream<{ evaluation_task_id: string }, unknown>) {
      const [off, len] = call.request.evaluation_task_id.split(':').map(Number);
      let i = off / CHUNK;
      const end = (off + len) / CHUNK;
      const go = (): void => {
        while (i < end) if (!call.write(frames[i++])) return void call.once('drain', go);
        call.end();
      };
      go();
    },
  });
  const port = await new Promise<number>((r, j) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? j(e) : r(p))));
  const tcp = await tcpSender(bytes);
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
  console.log(JSON.stringify({ msg: 'listening', grpc: port, tcp: tcp.port }));
}

// ---- the receiving process ----
function spawnSender(bytes: number): Promise<{ child: ChildProcess; grpc: number; tcp: number }> {
  const child = spawn(process.execPath, [__filename, '--serve', '--mib', String(bytes >> 20)], { stdio: ['pipe', 'pipe', 'inherit'] });
  process.once('exit', () => child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i >= 0) {
        const m = JSON.parse(buf.slice(0, i)) as { grpc: number; tcp: number };
        resolve({ child, ...m });
      }
    });
    child.once('exit', (c) => reject(new Error(`sender exited ${c}`)));
  });
}

class Pool {
  readonly workers: Worker[];
  constructor(k: number) {
    this.workers = Array.from({ length: k }, () => new Worker(__filename, { workerData: { probeWorker: true } }));
  }
  run(jobs: RangeJob[]): Promise<void> {
    return Promise.all(
      jobs.map(
        (job, i) =>
          new Promise<void>((resolve, reject) => {
            const w = this.workers[i];
            w.once('message', (m: { ok: boolean; error?: string }) => (m.ok ? resolve() : reject(new Error(m.error))));
            w.postMessage(job);
          }),
      ),
    ).then(() => undefined);
  }
  close(): Promise<number[]> {
    return Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** `k` ranges of whole chunks covering `bytes` (the last takes the remainder). */
function ranges(bytes: number, k: number): { offset: number; length: number }[] {
  const chunks = Math.ceil(bytes / CHUNK);
  const out: { offset: number; length: number }[] = [];
  for (let i = 0; i < k; i++) {
    const a = Math.floor((chunks * i) / k) * CHUNK;
    const b = Math.min(bytes, Math.floor((chunks * (i + 1)) / k) * CHUNK);
    if (b > a) out.push({ offset: a, length: b - a });
  }
  return out;
}

async function probeMain(): Promise<void> {
  const bytes = Number(arg('mib', '64')) << 20;
  const reps = Number(arg('reps', '7'));
  const pieceBytes = Number(arg('piece-mib', '4')) << 20;
  const ks = arg('ks', '1,2,4,8').split(',').map(Number);
  const budget = Number(arg('budget-s', '110'));
  const out = arg('out', '');
  const t0 = now();
  const sender = await spawnSender(bytes);
  const pools = new Map(ks.map((k) => [k, new Pool(k)]));
  const mainClients = Array.from({ length: 8 }, () => client(sender.grpc));
  const arms: Record<string, () => Promise<void>> = {
    tcp: async () => void (await tcpReceive(sender.tcp, bytes, 'count')),
    grpc1: async () => void (await receiveRange(mainClients[0], { port: sender.grpc, offset: 0, length: bytes, pieceBytes })),
  };
  for (const k of [2, 4, 8]) {
    arms[`main${k}`] = async () =>
      void (await Promise.all(ranges(bytes, k).map((r, i) => receiveRange(mainClients[i], { port: sender.grpc, ...r, pieceBytes }))));
  }
  for (const k of ks) {
    const pool = pools.get(k)!;
    arms[`w${k}-count`] = () => pool.run(ranges(bytes, k).map((r) => ({ port: sender.grpc, ...r, pieceBytes })));
    arms[`w${k}-hash`] = () => {
      const land = new SharedArrayBuffer(bytes);
      return pool.run(ranges(bytes, k).map((r) => ({ port: sender.grpc, ...r, pieceBytes, land })));
    };
  }
  const names = Object.keys(arms);
  const wall: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  // One warm-up pass (channels connect, workers load the proto, JIT), then interleaved repetitions, the order
  // rotated each time; stops early past the time budget.
  for (const n of names) await arms[n]();
  let done = 0;
  for (let rep = 0; rep < reps && now() - t0 < budget; rep++) {
    for (let j = 0; j < names.length; j++) {
      const n = names[(j + rep) % names.length];
      const t = now();
      await arms[n]();
      wall[n].push(now() - t);
    }
    done++;
  }
  const tcp = median(wall.tcp);
  const result = {
    probe: 'download-parallel',
    bytes,
    chunk_bytes: CHUNK,
    piece_bytes: pieceBytes,
    repetitions: done,
    host: { cpus: os.cpus().length, model: os.cpus()[0]?.model, load: os.loadavg(), node: process.version },
    wall_seconds: Number((now() - t0).toFixed(1)),
    arms: Object.fromEntries(
      names.map((n) => [
        n,
        {
          mb_per_second: Math.round(bytes / median(wall[n]) / 1e6),
          over_tcp: Number((tcp / median(wall[n])).toFixed(3)),
          // same-repetition ratios: the spread of the arm against TCP
          over_tcp_each: wall[n].map((w, i) => Number((wall.tcp[i] / w).toFixed(3))),
        },
      ]),
    ),
  };
  const text = JSON.stringify(result, null, 1);
  if (out) await fs.writeFile(out, text + '\n');
  console.log(text);
  for (const c of mainClients) c.close();
  await Promise.all([...pools.values()].map((p) => p.close()));
  sender.child.stdin!.end();
  process.exit(0);
}

if (!isMainThread && (workerData as { probeWorker?: boolean } | undefined)?.probeWorker) workerMain();
else if (isMainThread && process.argv.includes('--serve')) void serveMain(Number(arg('mib', '64')) << 20);
else if (isMainThread)
  probeMain().catch((e: Error) => {
    console.error(`probe: ${e.message}`);
    process.exit(1);
  });
