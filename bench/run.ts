// npm run bench [-- section…]: figures, each against a baseline measured in the same run, printed as a table and
// written as JSON to bench/out/bench.json. Sections (default: all):
//  fedavg     FedAvg aggregation throughput as the coordinator runs it (each update's opened chunks checked and
//             folded into the running fixed-point sum as they arrive) vs copying the same bytes (Float32Array.set);
//             with the coordinator's default helper threads for the fold and with one thread (bench/fedavg-bench.ts;
//             BENCH_FOLD_THREADS to try another count).
//  transport  Adapter download (unsealed tensor stream) and sealed upload through the real coordinator over gRPC
//             loopback; the sealed upload against an unsealed upload of the same stream to a bench-only server
//             (bench/upload-baseline.ts), interleaved; also against the unsealed download and raw TCP loopback.
//             The download rows: the SDK's download interleaved with raw TCP and the arms between them
//             (bench/download-bench.ts; BENCH_DOWNLOAD_REPS).
//  download   Those download rows alone.
//  memory     Coordinator peak RSS with N sites uploading 1M-parameter deltas, N = 100 and 1,000
//             (BENCH_MEMORY_SITES=100,1000,5000 to change, BENCH_MEMORY_PARAMS for the delta size,
//             BENCH_MEMORY_PROCESSES / BENCH_MEMORY_CONCURRENCY for the senders;
//             bench/coordinator-memory.ts).
//  training   Local LoRA training throughput of the demo model on the selected tfjs backend.
//  secagg     The cost of a round with secure aggregation against a plain sealed-upload round (bench/secagg.ts).
//  joins      N sites joining at once (bench/join-storm.ts): time until all are joined with their task streams
//             open, and reconnects.
import { promises as fs, readFileSync } from 'node:fs';
import { sealDeltaPipelined, sendSealed } from '../client-sdk/sealed-sender';
import { downloadAdapter, SITE_CHANNEL_OPTIONS } from '../client-sdk/download';
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import * as grpc from '@grpc/grpc-js';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { benchFedAvg, fedavgRow, openedChunks } from './fedavg-bench';
import { benchCoordinatorMemory, type MemoryRow } from './coordinator-memory';
import { Coordinator } from '../coordinator';
// Its rounds run the classic defaults (FedAvg…), as every figure it reported was measured with them.
import { classicConfig } from '../test/classic-defaults';
import { DEFAULT_CHUNK_BYTES, loadFedtuneProto } from '../proto/load';
import type { NamedTensor } from '../proto/tensors';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import { benchSecAgg, lcgTensors, secaggTable, siteStepsTable, type SecAggBenchRow } from './secagg';
import { benchJoins } from './join-storm';
import { sendPlain, startPlainUploadServer } from './upload-baseline';
import { benchDownloads, downloadRows } from './download-bench';
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

async function benchGrpc(params: number, reps = 3) {
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
  const coordinator = new Coordinator({
    config,
    initialAdapter: () => adapter,
    baseModel: { name: 'bench', sha256: '0'.repeat(64) },
    adapterConfig: {},
    logger: pino({ level: 'silent' }),
  });
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

async function benchTraining(): Promise<Record<string, number | string>> {
  // Loaded here, not at the top: the other sections run without tfjs (e.g. on a machine bundled without it).
  /* eslint-disable @typescript-eslint/no-require-imports -- a lazy load, typed through typeof import() */
  const { selectBackend } = require('../client-sdk/model/backend') as typeof import('../client-sdk/model/backend');
  const { loadGpt2Dir } = require('../client-sdk/model/load') as typeof import('../client-sdk/model/load');
  const { LoraSftTrainer } = require('../client-sdk/sft/lora-trainer') as typeof import('../client-sdk/sft/lora-trainer');
  const { initLoraAdapter } = require('../proto/model/lora-layout') as typeof import('../proto/model/lora-layout');
  const { prepareSpamTask, DEFAULT_MODEL_DIR } = require('../client-sdk/demo/spam-task') as typeof import('../client-sdk/demo/spam-task');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const backend = await selectBackend();
  const task = prepareSpamTask({ numClients: 1, splitSeed: 7, maxSeqLen: 96 });
  const base = await loadGpt2Dir(DEFAULT_MODEL_DIR);
  const lora = { r: 8, alpha: 16, dropout: 0.05, targetModules: ['c_attn', 'c_proj', 'c_fc'] };
  const trainer = new LoraSftTrainer({ model: base.model, lora, train: task.clients[0].train });
  const adapter = initLoraAdapter(base.config, lora, 1);
  const plan = { round: 1, taskId: 'bench', localSteps: 2, batchSize: 16, learningRate: 1e-3, weightDecay: 0, maxSeqLen: 96, seed: 1 };
  await trainer.train(adapter, plan); // warm-up: kernels, buffers
  const steps = 10;
  const t = now();
  const out = await trainer.train(adapter, { ...plan, localSteps: steps, seed: 2 });
  const dt = now() - t;
  const meanLen = task.clients[0].train.reduce((s, e) => s + Math.min(96, e.prompt.length + e.completion.length), 0) / task.clients[0].train.length;
  return {
    backend,
    steps,
    batch_size: 16,
    step_seconds: dt / steps,
    examples_per_second: (steps * 16) / dt,
    tokens_per_second: (steps * 16 * meanLen) / dt,
    mean_sequence_tokens: meanLen,
    train_loss: out.metrics.train_loss ?? NaN,
  };
}

/** One summary row per client count: a SecAgg round's cost against a plain round (bench/secagg.ts). */
function secaggRows(rows: readonly SecAggBenchRow[]): [string, string, string, string][] {
  return rows
    .filter((r) => r.variant === 'secagg')
    .map((r) => {
      const p = rows.find((x) => x.variant === 'plain' && x.clients === r.clients)!;
      return [
        `SecAgg round, ${r.clients} clients × ${r.params / 1e6}M params (${r.graph})`,
        `client ${r.client_ms.toFixed(0)} ms, coord. ${r.coordinator_ms.toFixed(0)} ms`,
        `plain ${p.client_ms.toFixed(0)} / ${p.coordinator_ms.toFixed(0)} ms`,
        `round ${r.round_ms_over_plain.toFixed(2)}× plain (client ${r.client_ms_over_plain.toFixed(1)}×, CPU ${r.client_cpu_ms_over_plain.toFixed(1)}×; coord. ${r.coordinator_ms_over_plain.toFixed(2)}×)`,
      ];
    });
}

async function main(): Promise<void> {
  const all = ['fedavg', 'transport', 'download', 'memory', 'training', 'secagg', 'joins'];
  const want = new Set(process.argv.slice(2).length ? process.argv.slice(2) : all);
  for (const w of want) if (!all.includes(w)) throw new Error(`unknown bench section ${w}; known: ${all.join(', ')}`);
  const memorySites = (process.env.BENCH_MEMORY_SITES ?? '100,1000').split(',').map(Number);
  // Parameters per delta (default 1Mi); a smaller one shows the per-site state apart from the update bytes.
  const memoryParams = Number(process.env.BENCH_MEMORY_PARAMS ?? 1 << 20);
  // Sender processes and uploads in flight per process (4 and 2 suit the 2-core box; a many-core host takes more).
  const memoryProcesses = Number(process.env.BENCH_MEMORY_PROCESSES ?? 4);
  const memoryConcurrency = Number(process.env.BENCH_MEMORY_CONCURRENCY ?? 2);
  const results: Record<string, unknown> = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? '', node: process.version, loadavg: os.loadavg() },
  };
  const rows: [string, string, string, string][] = [];
  if (want.has('fedavg')) {
    const f = await benchFedAvg(10, 1 << 20);
    results.fedavg = f;
    rows.push(fedavgRow(f));
  }
  if (want.has('transport')) {
    const tr = await benchGrpc(16 << 20, Number(process.env.BENCH_TRANSPORT_REPS ?? 5));
    results.transport = tr;
    rows.push([
      'upload 64 MiB update over gRPC (sealed, spooled)',
      `${tr.upload_mb_per_second.toFixed(0)} MB/s`,
      `unsealed upload ${tr.unsealed_upload_mb_per_second.toFixed(0)} MB/s`,
      `${(100 * tr.sealed_upload_over_unsealed_upload).toFixed(0)}% of the unsealed upload (median of ${tr.repetitions} pairs, ${(100 * tr.sealed_upload_over_unsealed_upload_min).toFixed(0)}–${(100 * tr.sealed_upload_over_unsealed_upload_max).toFixed(0)}%; goal 80%; in CPU time ${(100 * tr.sealed_upload_over_unsealed_upload_cpu).toFixed(0)}%, main thread ${(100 * tr.sealed_upload_over_unsealed_upload_main_thread_cpu).toFixed(0)}%; sealed first ${(100 * tr.sealed_upload_over_unsealed_upload_sealed_first).toFixed(0)}%, unsealed first ${(100 * tr.sealed_upload_over_unsealed_upload_unsealed_first).toFixed(0)}%); ${(100 * tr.sealed_upload_over_unsealed_download).toFixed(0)}% of the unsealed download; ${(100 * tr.upload_over_tcp).toFixed(0)}% of TCP`,
    ]);
  }
  if (want.has('transport') || want.has('download')) {
    // The download goal's figures: the SDK's download and raw TCP interleaved (bench/download-bench.ts).
    const d = await benchDownloads(16 << 20, Number(process.env.BENCH_DOWNLOAD_REPS ?? 7), Number(process.env.BENCH_DOWNLOAD_CHUNK_BYTES ?? 1 << 20));
    results.download = d;
    rows.push(...downloadRows(d));
  }
  if (want.has('memory')) {
    const mem: MemoryRow[] = [];
    for (const n of memorySites) mem.push(await benchCoordinatorMemory(n, memoryParams, memoryProcesses, memoryConcurrency));
    results.memory = mem;
    for (const m of mem) {
      rows.push([
        `coordinator peak RSS, ${m.sites} sites × ${m.params / 2 ** 20}Mi params`,
        `${m.coordinator_peak_rss_mb.toFixed(0)} MB`,
        `updates total ${(m.update_bytes_total / 1e6).toFixed(0)} MB`,
        `at start ${m.coordinator_rss_at_start_mb.toFixed(0)} MB; ${m.seconds.toFixed(0)} s`,
      ]);
    }
  }
  if (want.has('training')) {
    const t = await benchTraining();
    results.training = t;
    rows.push([
      `LoRA training (${t.backend}, batch 16)`,
      `${Number(t.tokens_per_second).toFixed(0)} tokens/s`,
      `${(Number(t.step_seconds) * 1000).toFixed(0)} ms/step`,
      `${Number(t.examples_per_second).toFixed(1)} examples/s`,
    ]);
  }
  let secagg: Awaited<ReturnType<typeof benchSecAgg>> | undefined;
  if (want.has('secagg')) {
    secagg = await benchSecAgg();
    results.secagg = secagg;
    rows.push(...secaggRows(secagg.rows));
  }
  if (want.has('joins')) {
    const joins = await benchJoins([1000, 2000]);
    results.joins = joins;
    rows.push(
      ...joins.map((j): [string, string, string, string] => [
        `${j.sites} sites join at once (${j.processes} processes, ${j.auth})`,
        `${j.join_seconds.toFixed(1)} s`,
        `${j.reconnects} reconnects`,
        `coordinator CPU ${j.coordinator_cpu_seconds.toFixed(1)} s`,
      ]),
    );
  }
  const w = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) console.log(r.map((x, i) => x.padEnd(w[i])).join('  │  '));
  if (secagg) {
    console.log(
      `\nOne round with and without secure aggregation, ${secagg.options.params} params (median of ${secagg.options.reps}; round = coordinator + mean client):`,
    );
    console.log(secaggTable(secagg.rows));
    console.log(`\nA site, in CPU ms by step:\n${siteStepsTable(secagg.rows)}`);
  }
  const outDir = path.resolve(__dirname, '..', '..', 'bench', 'out');
  await fs.mkdir(outDir, { recursive: true });
  await fs.writeFile(path.join(outDir, 'bench.json'), JSON.stringify(results, null, 2) + '\n');
  console.log(`wrote ${path.join(outDir, 'bench.json')}`);
}

main().catch((e: Error) => {
  console.error(e);
  process.exit(1);
});
