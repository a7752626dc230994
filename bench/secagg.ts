// The cost of one federated round with and without secure aggregation, for N clients and m parameters:
// client compute (mean per client), coordinator compute (total), bytes each side sends, and the round cost
// = coordinator ms + mean client ms (clients compute in parallel at their own sites; the coordinator's work
// is serial). Both arms run the real protocol code (bench/secagg-round.ts says exactly which steps), clients
// one after another in this process. Variants: no dropouts, and 10% of the clients gone after the share-keys
// stage (SecAgg rebuilds their mask keys; the plain round simply lacks the same clients' updates). Each
// (N, variant) runs `reps` times interleaved; every figure is the median over reps. The SecAgg sum is
// checked to be bit-identical to the sum of the survivors' encoded updates.
// Stand-alone: node dist/bench/secagg.js [--quick] [--reps R] [--clients 10,50,100] [--params 1000000]
// writes bench/out/secagg.json and bench/out/secagg.md.
import { createCipheriv } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../coordinator/config';
import type { NamedTensor } from '../proto/tensors';
import { addMasks } from '../proto/secagg/prg';
import { plainRound, secaggRound } from './secagg-round';
import { now, roundSetup, type ArmResult, type RoundDefaults } from './secagg-round-setup';

export interface SecAggBenchOptions {
  readonly clients: readonly number[];
  readonly params: number;
  readonly dropFraction: number;
  readonly reps: number;
}

export type Variant = 'plain' | 'secagg' | 'plain_drop' | 'secagg_drop';

export interface SecAggBenchRow {
  clients: number;
  params: number;
  variant: Variant;
  graph: string;
  threshold: number;
  dropped: number;
  /** Mean over the clients that completed the round. */
  client_ms: number;
  /** The same in CPU ms (process.cpuUsage): steadier than wall time on a shared box. */
  client_cpu_ms: number;
  coordinator_cpu_ms: number;
  client_cpu_ms_over_plain: number;
  /** SecAgg rows: mean CPU ms of each site step (encode, digest, advertise, shareKeys, receiveShares, mask, seal, consistency, unmask). */
  client_cpu_stages_ms: Record<string, number>;
  coordinator_ms: number;
  /** coordinator_ms + client_ms. */
  round_ms: number;
  client_bytes_sent: number;
  client_bytes_received: number;
  coordinator_bytes_sent: number;
  coordinator_bytes_received: number;
  client_ms_over_plain: number;
  coordinator_ms_over_plain: number;
  round_ms_over_plain: number;
  client_bytes_over_plain: number;
  /** coordinator_bytes_sent plus what it sends in either arm (tasks, adapter downloads, upload acks). */
  coordinator_bytes_sent_with_download: number;
  coordinator_bytes_with_download_over_plain: number;
  /** Of client_ms / coordinator_ms / client bytes: what the consistency round adds (0 for plain rows). */
  consistency_client_ms: number;
  consistency_coordinator_ms: number;
  consistency_client_bytes: number;
  /** The round without the consistency round (SecAgg as before it): round_ms − both consistency parts, ×plain. */
  round_ms_without_consistency_over_plain: number;
  /** Signatures a site makes (1) and checks (the quorum relayed to it) in the consistency round. */
  consistency_signatures_checked: number;
  /** Max |adapter_secagg − adapter_plain| over all values (quantisation and clipping; 0 for plain rows). */
  max_abs_diff_vs_plain: number;
  /** Per repetition, in run order: the medians above come from these. */
  samples: { client_ms: number[]; client_cpu_ms: number[]; coordinator_ms: number[]; round_ms: number[] };
}

export interface SecAggBenchResult {
  options: SecAggBenchOptions;
  defaults: RoundDefaults;
  prg: { chacha20_keystream_gb_per_second: number; aes256ctr_keystream_gb_per_second: number; masks_gb_per_second: number };
  mask_keystream_gb_per_second: number;
  load_average: { before: number[]; after: number[] };
  seconds: number;
  rows: SecAggBenchRow[];
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Deterministic pseudo-random tensors (an LCG: reproducible inputs, not randomness that matters). */
export function lcgTensors(count: number, size: number, scale: number, seed: number, name: (i: number) => string): NamedTensor[] {
  let s = seed >>> 0;
  return Array.from({ length: count }, (_, i) => {
    const data = new Float32Array(size);
    for (let j = 0; j < size; j++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      data[j] = ((s / 4294967296) * 2 - 1) * scale;
    }
    return { name: name(i), dtype: 'float32', shape: [size], data };
  });
}

/** Keystream throughput in isolation (64 KiB update() calls, 4 MiB, median of 15) and addMasks over 8 keys. */
function prgThroughput(): SecAggBenchResult['prg'] {
  const zeros = Buffer.alloc(64 << 10);
  const ks = (alg: string): number => {
    const ts: number[] = [];
    for (let r = 0; r < 15; r++) {
      const t = now();
      const c = createCipheriv(alg, Buffer.alloc(32, r), Buffer.alloc(16));
      for (let off = 0; off < 4 << 20; off += zeros.length) c.update(zeros);
      ts.push(now() - t);
    }
    return (4 << 20) / median(ts) / 1e6;
  };
  const v = new Uint32Array(1 << 20);
  const masks = Array.from({ length: 8 }, (_, k) => ({ key: new Uint8Array(32).fill(k), sign: (k % 2 ? 1 : -1) as 1 | -1 }));
  const ts: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t = now();
    addMasks(v, masks);
    ts.push(now() - t);
  }
  const chacha = ks('chacha20');
  return {
    chacha20_keystream_gb_per_second: chacha,
    aes256ctr_keystream_gb_per_second: ks('aes-256-ctr'),
    masks_gb_per_second: (8 * 4 * v.length) / median(ts) / 1e6,
  };
}

function maxAbsDiff(a: readonly NamedTensor[], b: readonly NamedTensor[]): number {
  let m = 0;
  for (let k = 0; k < a.length; k++) for (let i = 0; i < a[k].data.length; i++) m = Math.max(m, Math.abs(a[k].data[i] - b[k].data[i]));
  return m;
}

export async function benchSecAgg(opts: Partial<SecAggBenchOptions> = {}): Promise<SecAggBenchResult> {
  const o: SecAggBenchOptions = { clients: [10, 50, 100], params: 1_000_000, dropFraction: 0.1, reps: 3, ...opts };
  const started = now();
  const before = os.loadavg();
  const cfg = loadConfig({ overrides: { log: { level: 'silent' } } });
  const { clipNorm, weightCap, maxClients, fullGraphMax } = cfg.secagg;
  const defaults: RoundDefaults = { clipNorm, weightCap, maxClients, fullGraphMax, maxUploadBytes: cfg.transport.maxUploadBytes };
  const size = o.params / 4;
  const name = (i: number): string => `layer${i}.lora_B.weight`;
  const global = lcgTensors(4, size, 0.1, 1, name);
  const deltas: NamedTensor[][] = [];
  const delta = (i: number): NamedTensor[] => (deltas[i] ??= lcgTensors(4, size, 1e-3, 100 + i, name));
  // Warm-up (JIT, OpenSSL contexts, allocator): one small round of each arm at full size, not reported.
  const warm = roundSetup(5, global, delta, defaults);
  plainRound(warm, [0, 1, 2, 3, 4]);
  await secaggRound(warm, new Set([1]));
  const results = new Map<string, ArmResult[]>();
  for (let rep = 0; rep < o.reps; rep++) {
    for (const n of o.clients) {
      const s = roundSetup(n, global, delta, defaults);
      const every = Math.round(1 / o.dropFraction);
      const dropped = new Set(s.ids.map((_, i) => i).filter((i) => i % every === 1));
      const live = s.ids.map((_, i) => i).filter((i) => !dropped.has(i));
      const add = (v: Variant, r: ArmResult): void => void (results.get(`${n}/${v}`) ?? results.set(`${n}/${v}`, []).get(`${n}/${v}`)!).push(r);
      add(
        'plain',
        plainRound(
          s,
          s.ids.map((_, i) => i),
        ),
      );
      add('secagg', await secaggRound(s, new Set()));
      add('plain_drop', plainRound(s, live));
      add('secagg_drop', await secaggRound(s, dropped));
    }
  }
  const rows: SecAggBenchRow[] = [];
  for (const n of o.clients) {
    for (const v of ['plain', 'secagg', 'plain_drop', 'secagg_drop'] as const) {
      const rs = results.get(`${n}/${v}`)!;
      const clientMs = rs.map((r) => mean(r.clients.map((c) => c.ms)));
      const clientCpu = rs.map((r) => mean(r.clients.map((c) => c.cpuMs)));
      const stageNames = [...new Set(rs.flatMap((r) => r.clients.flatMap((c) => Object.keys(c.stages ?? {}))))];
      const stages = Object.fromEntries(stageNames.map((k) => [k, median(rs.map((r) => mean(r.clients.map((c) => c.stages?.[k] ?? 0))))] as const));
      const coordMs = rs.map((r) => r.coordinator.ms);
      const roundMs = rs.map((r, k) => coordMs[k] + clientMs[k]);
      const consClient = rs.map((r) => mean(r.clients.map((c) => c.consistencyMs ?? 0)));
      const consCoord = rs.map((r) => r.coordinator.consistencyMs ?? 0);
      const last = rs[rs.length - 1];
      const plain = v.startsWith('secagg') ? results.get(`${n}/${v === 'secagg' ? 'plain' : 'plain_drop'}`)!.at(-1)! : undefined;
      rows.push({
        clients: n,
        params: o.params,
        variant: v,
        graph: last.graph,
        threshold: last.threshold,
        dropped: last.dropped,
        client_ms: median(clientMs),
        client_cpu_ms: median(clientCpu),
        coordinator_cpu_ms: median(rs.map((r) => r.coordinator.cpuMs)),
        client_cpu_ms_over_plain: 1,
        client_cpu_stages_ms: stages,
        coordinator_ms: median(coordMs),
        round_ms: median(roundMs),
        client_bytes_sent: mean(last.clients.map((c) => c.sent)),
        client_bytes_received: mean(last.clients.map((c) => c.received)),
        coordinator_bytes_sent: last.coordinator.sent,
        coordinator_bytes_received: last.coordinator.received,
        coordinator_bytes_sent_with_download: last.coordinator.sent + last.common,
        client_ms_over_plain: 1,
        coordinator_ms_over_plain: 1,
        round_ms_over_plain: 1,
        client_bytes_over_plain: 1,
        coordinator_bytes_with_download_over_plain: 1,
        consistency_client_ms: median(consClient),
        consistency_coordinator_ms: median(consCoord),
        consistency_client_bytes: mean(last.clients.map((c) => c.consistencyBytes ?? 0)),
        round_ms_without_consistency_over_plain: 1,
        consistency_signatures_checked: last.signaturesChecked ?? 0,
        max_abs_diff_vs_plain: plain ? maxAbsDiff(last.adapter, plain.adapter) : 0,
        samples: { client_ms: clientMs, client_cpu_ms: clientCpu, coordinator_ms: coordMs, round_ms: roundMs },
      });
    }
  }
  for (const r of rows) {
    if (!r.variant.startsWith('secagg')) continue;
    const p = rows.find((x) => x.clients === r.clients && x.variant === (r.variant === 'secagg' ? 'plain' : 'plain_drop'))!;
    r.client_ms_over_plain = r.client_ms / p.client_ms;
    r.client_cpu_ms_over_plain = r.client_cpu_ms / p.client_cpu_ms;
    r.coordinator_ms_over_plain = r.coordinator_ms / p.coordinator_ms;
    r.round_ms_over_plain = r.round_ms / p.round_ms;
    r.round_ms_without_consistency_over_plain = (r.round_ms - r.consistency_client_ms - r.consistency_coordinator_ms) / p.round_ms;
    r.client_bytes_over_plain = r.client_bytes_sent / p.client_bytes_sent;
    r.coordinator_bytes_with_download_over_plain = r.coordinator_bytes_sent_with_download / p.coordinator_bytes_sent_with_download;
  }
  const prg = prgThroughput();
  return {
    options: o,
    defaults,
    prg,
    mask_keystream_gb_per_second: prg.masks_gb_per_second,
    load_average: { before, after: os.loadavg() },
    seconds: (now() - started) / 1e3,
    rows,
  };
}

const mb = (b: number): string => (b >= 1e6 ? `${(b / 1e6).toFixed(3)} MB` : `${(b / 1e3).toFixed(1)} kB`);
const x = (r: number): string => `${r.toFixed(2)}×`;

export function secaggTable(rows: readonly SecAggBenchRow[]): string {
  const head =
    '| N | arm | graph (t) | client ms (mean) | coordinator ms | round ms = coord. + mean client | client sends | coordinator sends (protocol) | client ms ×plain | coord. ms ×plain | round ×plain | client bytes ×plain | coord. bytes ×plain (incl. download) |';
  const label: Record<Variant, string> = { plain: 'plain', secagg: 'SecAgg', plain_drop: 'plain, 10% absent', secagg_drop: 'SecAgg, 10% dropped after shares' };
  const lines = rows.map((r) => {
    const sec = r.variant.startsWith('secagg');
    const ratios = sec
      ? [
          x(r.client_ms_over_plain),
          x(r.coordinator_ms_over_plain),
          `**${x(r.round_ms_over_plain)}**`,
          x(r.client_bytes_over_plain),
          x(r.coordinator_bytes_with_download_over_plain),
        ]
      : ['', '', '', '', ''];
    return `| ${r.clients} | ${label[r.variant]} | ${sec ? `${r.graph} (${r.threshold})` : '-'} | ${r.client_ms.toFixed(1)} | ${r.coordinator_ms.toFixed(0)} | ${r.round_ms.toFixed(0)} | ${mb(r.client_bytes_sent)} | ${sec ? mb(r.coordinator_bytes_sent) : '0 (†)'} | ${ratios.join(' | ')} |`;
  });
  return [head, '|' + '---|'.repeat(13), ...lines].join('\n');
}

/** What the consistency round costs, per SecAgg row. */
export function consistencyTable(rows: readonly SecAggBenchRow[]): string {
  const head =
    '| N | arm | consistency: client ms (mean) | coordinator ms | client bytes (sent + received) | signatures a site verifies (quorum) | round ×plain | round ×plain without it |';
  const lines = rows
    .filter((r) => r.variant.startsWith('secagg'))
    .map(
      (r) =>
        `| ${r.clients} | ${r.variant === 'secagg' ? 'SecAgg' : 'SecAgg, 10% dropped'} | ${r.consistency_client_ms.toFixed(2)} | ${r.consistency_coordinator_ms.toFixed(1)} | ${mb(r.consistency_client_bytes)} | ${r.consistency_signatures_checked} (+1 made) | ${x(r.round_ms_over_plain)} | ${x(r.round_ms_without_consistency_over_plain)} |`,
    );
  return [head, '|' + '---|'.repeat(8), ...lines].join('\n');
}

/** Where a SecAgg site's CPU time goes, step by step, against a plain site's (it only seals its delta). */
export function siteStepsTable(rows: readonly SecAggBenchRow[]): string {
  const sec = rows.filter((r) => r.variant === 'secagg');
  const steps = [...new Set(sec.flatMap((r) => Object.keys(r.client_cpu_stages_ms)))];
  const head = `| N | plain site CPU ms | SecAgg site CPU ms | ×plain | ${steps.join(' | ')} |`;
  const lines = sec.map((r) => {
    const p = rows.find((x) => x.clients === r.clients && x.variant === 'plain')!;
    const st = steps.map((k) => (r.client_cpu_stages_ms[k] ?? 0).toFixed(1)).join(' | ');
    return `| ${r.clients} | ${p.client_cpu_ms.toFixed(1)} | ${r.client_cpu_ms.toFixed(1)} | ${x(r.client_cpu_ms_over_plain)} | ${st} |`;
  });
  return [head, '|' + '---|'.repeat(4 + steps.length), ...lines].join('\n');
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick') || process.env.SECAGG_BENCH_QUICK === '1';
  const opts: Partial<SecAggBenchOptions> = quick ? { clients: [5, 10, 40], params: 40_000, reps: 1 } : {};
  const reps = argValue('--reps');
  const clients = argValue('--clients');
  const params = argValue('--params');
  const res = await benchSecAgg({
    ...opts,
    ...(reps ? { reps: Number(reps) } : {}),
    ...(clients ? { clients: clients.split(',').map(Number) } : {}),
    ...(params ? { params: Number(params) } : {}),
  });
  const table =
    secaggTable(res.rows) +
    '\n\nThe consistency round (its share of the figures above):\n\n' +
    consistencyTable(res.rows) +
    '\n\nA site, in CPU ms by step (no drops):\n\n' +
    siteStepsTable(res.rows);
  const notes = [
    `m = ${res.options.params.toLocaleString('en')} parameters, median of ${res.options.reps} run(s); load average ${res.load_average.before.map((l) => l.toFixed(2)).join(' ')} before, ${res.load_average.after.map((l) => l.toFixed(2)).join(' ')} after; ${res.seconds.toFixed(0)} s.`,
    '(†) Beyond the task, the adapter download and the upload acknowledgements, which are the same in both arms, a plain coordinator sends nothing; SecAgg adds its settings in the task, the roster, the routed shares and the unmask request. The last column counts those common bytes too.',
    `PRG: ChaCha20 keystream ${res.prg.chacha20_keystream_gb_per_second.toFixed(2)} GB/s, AES-256-CTR ${res.prg.aes256ctr_keystream_gb_per_second.toFixed(2)} GB/s (isolated); masks applied (keystream + add) ${res.prg.masks_gb_per_second.toFixed(2)} GB/s.`,
  ];
  console.log(table + '\n\n' + notes.join('\n'));
  const outDir = path.resolve(__dirname, '..', '..', 'bench', 'out');
  await fs.mkdir(outDir, { recursive: true });
  const out = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? '', node: process.version, openssl: process.versions.openssl },
    quick,
    ...res,
  };
  await fs.writeFile(path.join(outDir, 'secagg.json'), JSON.stringify(out, null, 2) + '\n');
  await fs.writeFile(path.join(outDir, 'secagg.md'), `${table}\n\n${notes.join('\n\n')}\n`);
  console.log(`wrote ${path.join(outDir, 'secagg.json')} and secagg.md`);
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(e);
    process.exit(1);
  });
}

/** One summary row per client count: a SecAgg round's cost against a plain round (bench/secagg.ts). */
export function secaggRows(rows: readonly SecAggBenchRow[]): [string, string, string, string][] {
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
