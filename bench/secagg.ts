// Secure aggregation vs plain fixed-point FedAvg with the same quantisation, per round, for N clients and
// m parameters. Clients are simulated one after another in this process; figures are per-client means.
// Plain: encode, upload the vector, server sums (sumVectors) and decodes. SecAgg: the same encoding plus all
// four SecAgg stages (graph from chooseGraph), without dropouts and with 10% of clients dropped after the
// share-keys stage (the server then rebuilds their mask keys and removes their pair masks). The SecAgg sum is
// checked to be bit-identical to the plain one. Stand-alone: node dist/bench/secagg.js [--quick]
// (or SECAGG_BENCH_QUICK=1) for small sizes; writes bench/out/secagg.json.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import nacl from 'tweetnacl';
import type { NamedTensor } from '../proto/tensors';
import { DEFAULT_FULL_GRAPH_MAX, addMask, chooseGraph, decodeSum, encodeUpdate, sumVectors, vectorLayout, wireBytes, type SecAggRoundConfig } from '../proto/secagg';
import { simulateRound, type SimClient, type SimResult } from '../proto/secagg/simulate';

export interface SecAggBenchOptions {
  readonly clients: readonly number[];
  readonly params: number;
  readonly fullGraphMax: number;
  readonly dropFraction: number;
}

export interface SecAggBenchRow {
  clients: number;
  params: number;
  variant: 'plain' | 'secagg' | 'secagg_drop';
  graph: string;
  threshold: number;
  dropped: number;
  client_ms: number;
  coordinator_ms: number;
  client_bytes_sent: number;
  client_bytes_received: number;
  coordinator_bytes_sent: number;
  coordinator_bytes_received: number;
  client_ms_over_plain: number;
  coordinator_ms_over_plain: number;
  client_bytes_over_plain: number;
}

const now = (): number => Number(process.hrtime.bigint()) / 1e6;
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

function randomDelta(params: number, seed: number): NamedTensor[] {
  let s = seed >>> 0;
  return Array.from({ length: 4 }, (_, i) => {
    const data = new Float32Array(params / 4);
    for (let j = 0; j < data.length; j++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      data[j] = ((s / 4294967296) * 2 - 1) * 1e-3;
    }
    return { name: `layer${i}.lora_B.weight`, dtype: 'float32', shape: [data.length], data };
  });
}

/** Keystream + add throughput of addMask, GB of keystream per second. */
function maskThroughput(words: number): number {
  const v = new Uint32Array(words);
  const key = new Uint8Array(32).fill(7);
  addMask(v, key, 1); // warm-up
  const t = now();
  for (let r = 0; r < 5; r++) addMask(v, key, r % 2 ? 1 : -1);
  return (5 * 4 * words) / ((now() - t) / 1e3) / 1e9;
}

async function benchN(n: number, opts: SecAggBenchOptions): Promise<SecAggBenchRow[]> {
  const ids = Array.from({ length: n }, (_, i) => `site-${String(i).padStart(3, '0')}`);
  const global = randomDelta(opts.params, 1);
  const include = global.map((g) => g.name);
  const { graph, threshold } = chooseGraph(n, opts.fullGraphMax);
  const cfg: SecAggRoundConfig = {
    roundTag: `bench/${n}/1/0`, baseManifestSha256: '0'.repeat(64), selected: ids, threshold, graph,
    clipNorm: 1, weightCap: 1000, maxClients: 1024, include, vectorLength: vectorLayout(global, include).length,
  };
  // Plain round: every client encodes and uploads; the coordinator sums and decodes.
  const encoded: Uint32Array[] = [];
  const encodeMs: number[] = [];
  for (let i = 0; i < n; i++) {
    const delta = randomDelta(opts.params, 100 + i);
    const t = now();
    encoded.push(encodeUpdate(delta, 100 + i, cfg, nacl.randomBytes(32)));
    encodeMs.push(now() - t);
  }
  let t = now();
  const plainSum = sumVectors(encoded);
  decodeSum(plainSum, cfg, global);
  const plainCoord = now() - t;
  const vecBytes = wireBytes.vector(ids[0], cfg.vectorLength);
  const graphName = graph.kind === 'full' ? 'full' : `harary k=${graph.k}`;
  const plain: SecAggBenchRow = {
    clients: n, params: opts.params, variant: 'plain', graph: '-', threshold: 0, dropped: 0,
    client_ms: mean(encodeMs), coordinator_ms: plainCoord, client_bytes_sent: vecBytes, client_bytes_received: 0,
    coordinator_bytes_sent: 0, coordinator_bytes_received: n * vecBytes,
    client_ms_over_plain: 1, coordinator_ms_over_plain: 1, client_bytes_over_plain: 1,
  };
  const identities = ids.map(() => nacl.sign.keyPair());
  const clients: SimClient[] = ids.map((id, i) => ({ id, identitySecretKey: identities[i].secretKey, identityPublicKey: identities[i].publicKey, input: () => encoded[i] }));
  const row = async (variant: 'secagg' | 'secagg_drop'): Promise<SecAggBenchRow> => {
    const dropped = variant === 'secagg' ? [] : ids.filter((_, i) => i % Math.round(1 / opts.dropFraction) === 1);
    const r: SimResult = await simulateRound(cfg, clients, { beforeInput: dropped });
    const t0 = now();
    decodeSum(r.sum, cfg, global);
    const decodeMs = now() - t0;
    const expected = sumVectors(r.survivors.map((id) => encoded[ids.indexOf(id)]));
    if (!Buffer.from(r.sum.buffer).equals(Buffer.from(expected.buffer))) throw new Error(`secagg sum differs from the plain sum (N = ${n}, ${variant})`);
    const live = ids.filter((id) => !dropped.includes(id)).map((id) => r.clients.get(id)!);
    const clientMs = mean(live.map((s) => s.computeMs)) + mean(encodeMs);
    const sent = mean(live.map((s) => s.bytesSent));
    return {
      clients: n, params: opts.params, variant, graph: graphName, threshold, dropped: dropped.length,
      client_ms: clientMs, coordinator_ms: r.server.computeMs + decodeMs, client_bytes_sent: sent,
      client_bytes_received: mean(live.map((s) => s.bytesReceived)), coordinator_bytes_sent: r.server.bytesSent,
      coordinator_bytes_received: r.server.bytesReceived, client_ms_over_plain: clientMs / plain.client_ms,
      coordinator_ms_over_plain: (r.server.computeMs + decodeMs) / plain.coordinator_ms, client_bytes_over_plain: sent / vecBytes,
    };
  };
  return [plain, await row('secagg'), await row('secagg_drop')];
}

export async function benchSecAgg(opts: Partial<SecAggBenchOptions> = {}): Promise<{ options: SecAggBenchOptions; mask_keystream_gb_per_second: number; rows: SecAggBenchRow[] }> {
  const o: SecAggBenchOptions = { clients: [10, 50, 100], params: 1_000_000, fullGraphMax: DEFAULT_FULL_GRAPH_MAX, dropFraction: 0.1, ...opts };
  await benchN(5, { ...o, params: 4096 }); // warm-up: JIT and OpenSSL contexts, not reported
  const rows: SecAggBenchRow[] = [];
  for (const n of o.clients) rows.push(...(await benchN(n, o)));
  return { options: o, mask_keystream_gb_per_second: maskThroughput(Math.min(o.params, 1 << 20)), rows };
}

const kb = (b: number): string => (b >= 1e6 ? `${(b / 1e6).toFixed(2)} MB` : `${(b / 1e3).toFixed(1)} kB`);

export function secaggTable(rows: readonly SecAggBenchRow[]): string {
  const head = '| N | variant | graph (t) | client ms | coordinator ms | client sends | coordinator sends | client ms ×plain | coord. ms ×plain | client bytes ×plain |';
  const lines = rows.map((r) =>
    `| ${r.clients} | ${r.variant}${r.dropped ? ` (${r.dropped} dropped)` : ''} | ${r.variant === 'plain' ? '-' : `${r.graph} (${r.threshold})`} | ${r.client_ms.toFixed(1)} | ${r.coordinator_ms.toFixed(1)} | ${kb(r.client_bytes_sent)} | ${kb(r.coordinator_bytes_sent)} | ${r.client_ms_over_plain.toFixed(2)} | ${r.coordinator_ms_over_plain.toFixed(2)} | ${r.client_bytes_over_plain.toFixed(4)} |`);
  return [head, '|' + '---|'.repeat(10), ...lines].join('\n');
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick') || process.env.SECAGG_BENCH_QUICK === '1';
  const res = await benchSecAgg(quick ? { clients: [5, 10, 40], params: 10_000 } : {});
  console.log(secaggTable(res.rows));
  console.log(`mask keystream: ${res.mask_keystream_gb_per_second.toFixed(2)} GB/s`);
  const outDir = path.resolve(__dirname, '..', '..', 'bench', 'out');
  await fs.mkdir(outDir, { recursive: true });
  const out = { date: new Date().toISOString(), machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? '', node: process.version }, quick, ...res };
  await fs.writeFile(path.join(outDir, 'secagg.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${path.join(outDir, 'secagg.json')}`);
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(e);
    process.exit(1);
  });
}
