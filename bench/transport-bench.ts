// npm run bench's transport section: adapter download (unsealed tensor stream) and sealed upload through the real
// coordinator over gRPC loopback, the sealed upload against an unsealed upload of the same stream to a bench-only
// server (bench/upload-baseline.ts), interleaved; also against the unsealed download, raw TCP loopback and SHA-256
// on this machine, all measured in the same run; bench/run.ts writes its figures to bench/out/bench.json.
import { promises as fs, readFileSync } from 'node:fs';
import { sealDeltaPipelined, sendSealed } from '../client-sdk/sealed-sender';
import { downloadAdapter, SITE_CHANNEL_OPTIONS } from '../client-sdk/download';
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { openedChunks } from './fedavg-bench';
import { benchCoordinator } from './fixtures/bench-coordinator';
// Its rounds run the classic defaults (FedAvg…), as every figure it reported was measured with them.
import { classicConfig } from '../test/classic-defaults';
import { DEFAULT_CHUNK_BYTES, loadFedtuneProto } from '../proto/load';
import type { NamedTensor } from '../proto/tensors';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import { lcgTensors } from './secagg';
import { sendPlain, startPlainUploadServer } from './upload-baseline';
import { benchJoin } from './bench-join';

const now = (): number => Number(process.hrtime.bigint()) / 1e9;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** This process's CPU seconds (user + system): on a shared box, unlike wall time, not inflated by preemption. */
const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
/**
 * CPU seconds of the main thread alone (Linux: /proc, 10 ms ticks; NaN elsewhere). The transport bench runs site,
 * coordinator and baseline server in one process: its wall time follows the main thread's work, while the sealing
 * threads' share runs beside it on another core.
 */
const mainThreadCpuNow = (): number => {
  try {
    const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
};

function randomTensors(count: number, size: number, scale: number, seed: number): NamedTensor[] {
  return lcgTensors(count, size, scale, seed, (i) => `t${String(i).padStart(3, '0')}`);
}

async function benchTcp(bytes: number): Promise<number> {
  const chunk = Buffer.alloc(1 << 20, 7);
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const received = new Promise<void>((resolve) =>
    server.on('connection', (sock) => {
      let n = 0;
      sock.on('data', (d: Buffer) => {
        n += d.length;
        if (n >= bytes) resolve();
      });
    }),
  );
  const t = now();
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', r));
  for (let sent = 0; sent < bytes; sent += chunk.length) if (!sock.write(chunk)) await new Promise<void>((r) => sock.once('drain', r));
  await received;
  const dt = now() - t;
  sock.destroy();
  server.close();
  return bytes / dt;
}

/** SHA-256 throughput on this machine in the same run: every download hashes its bytes (checked against the trailer); raw TCP does not. */
function sha256Rate(bytes: number): number {
  const src = Buffer.alloc(1 << 20, 7);
  const times: number[] = [];
  for (let rep = 0; rep < 3; rep++) {
    const t = now();
    const h = createHash('sha256');
    for (let off = 0; off < bytes; off += src.length) h.update(src);
    h.digest();
    times.push(now() - t);
  }
  return bytes / median(times);
}

/** Each repetition's seconds: the download, the sealed upload (sealing included), the unsealed upload. */
interface TransportPair {
  download_s: number;
  sealed_upload_s: number;
  sealed_upload_cpu_s: number;
  unsealed_upload_cpu_s: number;
  unsealed_upload_s: number;
  unsealed_first: boolean;
}

export async function benchGrpc(params: number, reps = 3) {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-bench-'));
  const adapter = randomTensors(16, params / 16, 0.1, 9);
  const config = classicConfig({
    overrides: {
      server: { port: 0 },
      run: { dir },
      rounds: { total: reps + 1, minClients: 1, minUpdates: 1, clientsPerRound: 1, deadlineMs: 600_000 },
      log: { level: 'silent' },
      auth: { mode: 'tofu' },
    },
  });
  const coordinator = benchCoordinator(config, () => adapter);
  const { address } = await coordinator.start();
  const plain = await startPlainUploadServer(adapter, dir, SITE_CHANNEL_OPTIONS);
  const Ctor = loadFedtuneProto().fedtune.v1.Federation;
  const rpc = new Ctor(address, grpc.credentials.createInsecure(), { ...SITE_CHANNEL_OPTIONS });
  // Hello, then Join with the challenge signed (the bench's site has a throwaway identity; auth.mode tofu).
  const { hello, sessionToken: token, clientId, identitySecretKey } = await benchJoin(rpc);
  const stream = rpc.StreamTasks({ session_token: token });
  stream.on('error', () => undefined); // CANCELLED when we close it below
  // One task per round: each repetition downloads the round's base (unsealed) and then uploads a sealed update
  // for it, interleaved, so both arms of a ratio ran under the same load (this box is shared).
  const tasks: NonNullable<TaskEvent__Output['train']>[] = [];
  let taskArrived: (() => void) | undefined;
  stream.on('data', (ev: TaskEvent__Output) => {
    if (!ev.train) return;
    tasks.push(ev.train);
    taskArrived?.();
  });
  const nextTask = async (): Promise<NonNullable<TaskEvent__Output['train']>> => {
    while (tasks.length === 0) await new Promise<void>((r) => (taskArrived = r));
    return tasks.shift()!;
  };
  // As a site downloads it: the SDK's receive path (client-sdk/download.ts: every frame checked, the SHA-256
  // compared with the trailer) on the SDK's channel options.
  const download = async (version: number): Promise<void> => {
    await downloadAdapter(rpc, token, version);
  };
  const ctx = {
    token,
    runId: hello.run_id,
    clientId,
    coordinator: { keyId: hello.coordinator!.key_id, boxPublicKey: new Uint8Array(hello.coordinator!.box_public_key) },
    identitySecretKey,
    chunkBytes: DEFAULT_CHUNK_BYTES,
  };
  const downloads: number[] = [];
  const uploads: number[] = [];
  const seals: number[] = [];
  const ratios: number[] = [];
  const plainUploads: number[] = [];
  // CPU seconds of this process (site, coordinator and bench server all run in it) per upload: on a loaded box a
  // figure that preemption does not inflate.
  const plainCpu: number[] = [];
  const sealedCpu: number[] = [];
  const plainMain: number[] = [];
  const sealedMain: number[] = [];
  const uploadRatios: number[] = [];
  // Repetition -1 warms up and is not counted: the first of each arm pays the JIT, and the first large sealed upload
  // of a process starts the sealing threads (proto/crypto/seal-offload.ts), once per process.
  for (let rep = -1; rep < reps; rep++) {
    const task = await nextTask();
    let t = now();
    await download(task.base_version);
    downloads.push(now() - t);
    const delta = randomTensors(16, params / 16, 0.01, 10 + rep);
    // The unsealed baseline of the same update: before the sealed one on odd repetitions, after it on even ones.
    const sendPlainTimed = async (): Promise<void> => {
      plain.nextRound(); // a fresh running sum, as the coordinator's round has (opened before the upload)
      const t0 = now();
      const c0 = cpuNow();
      const m0 = mainThreadCpuNow();
      await sendPlain(plain.rpc, task, delta, DEFAULT_CHUNK_BYTES);
      plainUploads.push(now() - t0);
      plainCpu.push(cpuNow() - c0);
      plainMain.push(mainThreadCpuNow() - m0);
    };
    const plainFirst = rep % 2 === 1;
    if (plainFirst) await sendPlainTimed();
    t = now();
    const c = cpuNow();
    const m = mainThreadCpuNow();
    // As a site sends it: sealed to the coordinator's key and signed (sealing is part of the measured time), on
    // two threads as the SDK does (client-sdk/sealed-sender.ts sealDeltaPipelined).
    const frames = await sealDeltaPipelined(ctx, task, delta, 1);
    seals.push(now() - t);
    await sendSealed(rpc, frames);
    uploads.push(now() - t);
    sealedCpu.push(cpuNow() - c);
    sealedMain.push(mainThreadCpuNow() - m);
    if (!plainFirst) await sendPlainTimed();
    ratios.push(downloads[downloads.length - 1] / uploads[uploads.length - 1]);
    uploadRatios.push(plainUploads[plainUploads.length - 1] / uploads[uploads.length - 1]);
    if (rep === -1) for (const a of [downloads, seals, uploads, plainUploads, plainCpu, plainMain, sealedCpu, sealedMain, ratios, uploadRatios]) a.pop();
    // The site's report closes the round (every selected site uploaded and reported): the next task follows.
    await new Promise<void>((res, rej) =>
      rpc.ReportMetrics({ session_token: token, task_id: task.task_id, round: task.round, num_examples: 1, backend: 'bench', metrics: {} }, (e) =>
        e ? rej(e) : res(),
      ),
    );
  }
  stream.cancel();
  rpc.close();
  await plain.stop();
  await coordinator.stop(500);
  // The coordinator's compute on an upload beyond the transfer, for one update of the same size: its chunks folded
  // into a fresh running sum, whose first touch of its pages is part of it (each round of this bench is a new sum),
  // then into the same, already touched sum.
  const foldFreshS: number[] = [];
  const foldTouchedS: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const fa = new FedAvg().begin(adapter);
    const chunks = openedChunks(randomTensors(16, params / 16, 0.01, 20 + rep));
    for (const [id, times] of [
      ['a', foldFreshS],
      ['b', foldTouchedS],
    ] as const) {
      const t = now();
      const f = fa.open(id, 1);
      for (const c of chunks) f.push(c);
      f.finish();
      f.commit();
      times.push(now() - t);
    }
  }
  await fs.rm(dir, { recursive: true, force: true });
  const bytes = params * 4;
  const tcp = median([await benchTcp(bytes), await benchTcp(bytes), await benchTcp(bytes)]);
  const sha256 = sha256Rate(bytes);
  const sealedOverUnsealed = median(ratios);
  const sealedOverPlainUpload = median(uploadRatios);
  return {
    bytes,
    repetitions: reps,
    download_mb_per_second: bytes / median(downloads) / 1e6,
    upload_mb_per_second: bytes / median(uploads) / 1e6,
    /** The site's share of an upload: encoding, ChaCha20-Poly1305 and SHA-256 of the chunks, the signature. */
    seal_seconds: median(seals),
    accept_fold_fresh_sum_seconds: median(foldFreshS),
    accept_fold_touched_sum_seconds: median(foldTouchedS),
    raw_tcp_mb_per_second: tcp / 1e6,
    download_over_tcp: bytes / median(downloads) / tcp,
    download_best_over_tcp: bytes / Math.min(...downloads) / tcp,
    download_goal: 0.5,
    sha256_mb_per_second: sha256 / 1e6,
    upload_over_tcp: bytes / median(uploads) / tcp,
    /** The same update unsealed over the same gRPC method to the bench-only server (bench/upload-baseline.ts). */
    unsealed_upload_mb_per_second: bytes / median(plainUploads) / 1e6,
    sealed_upload_cpu_seconds: median(sealedCpu),
    unsealed_upload_cpu_seconds: median(plainCpu),
    // In CPU time (median over the repetitions of unsealed CPU / sealed CPU): what sealing costs whatever the load.
    sealed_upload_over_unsealed_upload_cpu: median(plainCpu.map((p, i) => p / sealedCpu[i])),
    // The main thread's CPU alone (the sealing threads' work excluded), summed over the repetitions (10 ms ticks).
    sealed_upload_main_thread_cpu_seconds: sealedMain.reduce((a, b) => a + b, 0) / reps,
    unsealed_upload_main_thread_cpu_seconds: plainMain.reduce((a, b) => a + b, 0) / reps,
    sealed_upload_over_unsealed_upload_main_thread_cpu: plainMain.reduce((a, b) => a + b, 0) / sealedMain.reduce((a, b) => a + b, 0),
    // The goal's ratio: median over the repetitions of (unsealed upload time / sealed upload time), each pair back to back.
    sealed_upload_over_unsealed_upload: sealedOverPlainUpload,
    sealed_upload_over_unsealed_upload_min: Math.min(...uploadRatios),
    sealed_upload_over_unsealed_upload_max: Math.max(...uploadRatios),
    // The same by order within the pair: the second arm of a pair reads slower (it collects the first one's garbage).
    sealed_upload_over_unsealed_upload_sealed_first: median(uploadRatios.filter((_, i) => i % 2 === 0)),
    sealed_upload_over_unsealed_upload_unsealed_first: uploadRatios.length > 1 ? median(uploadRatios.filter((_, i) => i % 2 === 1)) : NaN,
    sealed_upload_goal: 0.8,
    sealed_upload_goal_met: sealedOverPlainUpload >= 0.8 ? 1 : 0,
    // Secondary: against the unsealed download (median of download time / upload time, each pair back to back).
    sealed_upload_over_unsealed_download: sealedOverUnsealed,
    sealed_upload_over_unsealed_min: Math.min(...ratios),
    sealed_upload_over_unsealed_max: Math.max(...ratios),
    pairs: uploads.map((u, i): TransportPair => ({
      download_s: downloads[i],
      sealed_upload_s: u,
      unsealed_upload_s: plainUploads[i],
      unsealed_first: i % 2 === 1,
      sealed_upload_cpu_s: sealedCpu[i],
      unsealed_upload_cpu_s: plainCpu[i],
    })),
  };
}

/** The transport section's summary row (npm run bench). */
export function transportRow(tr: Awaited<ReturnType<typeof benchGrpc>>): [string, string, string, string] {
  return [
    'upload 64 MiB update over gRPC (sealed, spooled)',
    `${tr.upload_mb_per_second.toFixed(0)} MB/s`,
    `unsealed upload ${tr.unsealed_upload_mb_per_second.toFixed(0)} MB/s`,
    `${(100 * tr.sealed_upload_over_unsealed_upload).toFixed(0)}% of the unsealed upload (median of ${tr.repetitions} pairs, ${(100 * tr.sealed_upload_over_unsealed_upload_min).toFixed(0)}–${(100 * tr.sealed_upload_over_unsealed_upload_max).toFixed(0)}%; goal 80%; in CPU time ${(100 * tr.sealed_upload_over_unsealed_upload_cpu).toFixed(0)}%, main thread ${(100 * tr.sealed_upload_over_unsealed_upload_main_thread_cpu).toFixed(0)}%; sealed first ${(100 * tr.sealed_upload_over_unsealed_upload_sealed_first).toFixed(0)}%, unsealed first ${(100 * tr.sealed_upload_over_unsealed_upload_unsealed_first).toFixed(0)}%); ${(100 * tr.sealed_upload_over_unsealed_download).toFixed(0)}% of the unsealed download; ${(100 * tr.upload_over_tcp).toFixed(0)}% of TCP`,
  ];
}
