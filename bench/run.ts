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
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { benchFedAvg, fedavgRow } from './fedavg-bench';
import { benchCoordinatorMemory, type MemoryRow } from './coordinator-memory';
import { benchJoins } from './join-storm';
import { benchDownloads, downloadRows } from './download-bench';
import { benchGrpc, transportRow } from './transport-bench';
import { benchTraining, trainingRow } from './training-bench';
import { benchSecAgg, secaggRows, secaggTable, siteStepsTable } from './secagg';

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
    rows.push(transportRow(tr));
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
    rows.push(trainingRow(t));
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
