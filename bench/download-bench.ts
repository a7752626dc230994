// The download half of issue 8's transport goal (gRPC transfer >= 50% of raw TCP loopback). Each repetition
// downloads the latest version from a real coordinator through the SDK's receive path (client-sdk/download.ts:
// every frame checked, the chunks landed in the tensors and hashed on the landing worker, the SHA-256 compared with
// the trailer) and moves the same bytes over raw TCP loopback, so both arms of every ratio ran moments apart under
// the same load. The baseline's reader only counts bytes: no copy, no hash. Further arms say where the gap lies:
// the same gRPC call with a reader that only counts, node:http2 alone (the ceiling of any gRPC in node), and raw
// TCP whose reader also hashes, or hashes and copies into tensors, on the same thread.
//
// Every arm runs twice per repetition (bench/download-site.ts): two-process, as deployed, with the sending side
// (the coordinator, the TCP and HTTP/2 senders) in a child process (bench/fixtures/download-sender.ts) and the
// receiving side here; this gives the goal's figure. Same-process, both sides in this process, kept as the
// secondary figure (there the main thread runs sender and receiver). Per arm, the receiving process's CPU: its
// main thread's and every other thread's (Linux), and the sender's process in the two-process arms.
//
// `node dist/bench/run.js download` runs it alone (BENCH_DOWNLOAD_REPS, default 7; BENCH_DOWNLOAD_CHUNK_BYTES, the
// coordinator's transport.chunkBytes, default 1 MiB; BENCH_DOWNLOAD_STREAMS, the SDK's downloadStreams, default
// its own for this host); the transport section runs it for its download rows. The coordinator commits the adapter
// with piece hashes, so the SDK arm downloads it over that many range calls on worker threads; a second SDK arm
// downloads it in one stream.
// `node dist/bench/download-bench.js` prints its JSON.
import { readdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import type { NamedTensor } from '../proto/tensors';
import { SITE_CHANNEL_OPTIONS } from '../client-sdk/download';
import { defaultDownloadStreams, parallelDownloads, rangeStats } from '../client-sdk/download-ranges';
import { benchAdapter, joinDownloadSite, spawnSenders, startSenders, type DownloadSenders, type DownloadSite } from './download-site';
import { http2Receive, tcpReceive, type Http2Transfer } from './loopback-arms';

const now = (): number => Number(process.hrtime.bigint()) / 1e9;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A process's CPU milliseconds so far by thread id, and its minor page faults (Linux /proc; undefined elsewhere). */
function threadCpuMs(pid: number = process.pid): { pid: number; threads: Map<string, number>; minorFaults: number } | undefined {
  const fields = (f: string): string[] => {
    const st = readFileSync(f, 'utf8');
    return st.slice(st.lastIndexOf(')') + 2).split(' ');
  };
  try {
    const threads = new Map<string, number>();
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try {
        const f = fields(`/proc/${pid}/task/${t}/stat`);
        threads.set(t, ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS);
      } catch {
        // a thread that ended between the listing and the read
      }
    }
    return { pid, threads, minorFaults: Number(fields(`/proc/${pid}/stat`)[7]) };
  } catch {
    return undefined;
  }
}

/** CPU ms between two readings: the main thread's, all other threads' together, and the busiest other thread's. */
function cpuBetween(c0: NonNullable<ReturnType<typeof threadCpuMs>>, c1: NonNullable<ReturnType<typeof threadCpuMs>>) {
  let main = 0;
  let others = 0;
  let busiest = 0;
  for (const [t, ms] of c1.threads) {
    const d = ms - (c0.threads.get(t) ?? 0);
    if (t === String(c1.pid)) main = d;
    else {
      others += d;
      busiest = Math.max(busiest, d);
    }
  }
  return { main, others, busiest, minorFaults: c1.minorFaults - c0.minorFaults };
}
/** USER_HZ: 100 on every Linux build node supports. */
const CLOCK_TICKS = 100;

/**
 * The arms, each moving the same bytes over loopback, from the sending side to this process:
 *  download   the SDK's real receive path (what the goal measures): range calls on the workers' own HTTP/2 client
 *  download_grpc_js  the same download with its range calls made by grpc-js (the fallback, and the path before)
 *  grpc_bare  the same DownloadAdapter call from the same coordinator, a reader that only counts the chunks' bytes
 *  http2      node:http2 alone, the reader counts
 *  tcp        raw TCP, the reader counts (the goal's baseline: a socket read and nothing else)
 *  tcp_hash   raw TCP, the reader also computes the SHA-256 (on the same thread)
 *  tcp_hash_copy  raw TCP, the reader hashes and copies into tensor-sized buffers (on the same thread)
 */
const ARMS = ['download', 'download_grpc_js', 'download_one_stream', 'grpc_bare', 'http2', 'tcp', 'tcp_hash', 'tcp_hash_copy'] as const;
type Arm = (typeof ARMS)[number];
/** Where the sending side runs: a child process (as deployed; the goal's figure) or this process. */
const MODES = ['two_process', 'same_process'] as const;
type Mode = (typeof MODES)[number];

export interface ArmFigures {
  /** Wall seconds, one per repetition. */
  seconds: number[];
  mb_per_second: number;
  /** Median over the repetitions of (raw TCP seconds / this arm's seconds), each in the same repetition and mode. */
  over_tcp: number;
  over_tcp_min: number;
  over_tcp_max: number;
  /** Median CPU milliseconds per transfer of the receiving process: its main thread's and every other thread's. */
  main_thread_cpu_ms?: number;
  other_threads_cpu_ms?: number;
  /** The busiest thread but main (for the download, the landing worker; else a GC helper), and minor page faults. */
  busiest_other_thread_cpu_ms?: number;
  minor_faults?: number;
  /** Two-process arms: the sending process's CPU milliseconds per transfer, its main thread's and all its threads'. */
  sender_main_thread_cpu_ms?: number;
  sender_process_cpu_ms?: number;
}

export interface DownloadBench {
  bytes: number;
  repetitions: number;
  /** The coordinator's transport.chunkBytes: the data bytes per download message. */
  chunk_bytes: number;
  /** The SDK's downloadStreams in the download arm (download_one_stream: 1). */
  download_streams: number;
  /** Which client made the download arm's range calls ('http2': the workers' own; 'grpc-js'). */
  range_transport: string;
  /** Timed downloads that went over range calls (piece hashes, worker threads; both range arms), and the range calls each made. */
  parallel_downloads: number;
  ranges_per_parallel_download: number;
  /** The two-process HTTP/2 arm's last transfer: 'data' events and the largest, with 2^24 - 1 offered as the frame size. */
  http2_data_events: number;
  http2_largest_data_event_bytes: number;
  /** The sending side in a child process, the receiving side here: as deployed. */
  arms_two_process: Record<Arm, ArmFigures>;
  /** Both sides in this process (one main thread runs sender and receiver): the secondary figures. */
  arms_same_process: Record<Arm, ArmFigures>;
  /** The goal's figure: the SDK's download at >= 50% of raw TCP loopback, two processes (median of same-repetition ratios). */
  download_over_tcp_two_process: number;
  /** The same ratio with both sides in one process. */
  download_over_tcp_same_process: number;
  download_goal: 0.5;
  /** download_over_tcp_two_process >= download_goal. */
  download_goal_met: 0 | 1;
}

/**
 * `reps` repetitions; each runs every arm once in each mode on a `params`-value adapter (16 tensors), in an order
 * rotated from one repetition to the next, so that every ratio compares transfers made moments apart under the
 * same load. What each arm received is checked after its timing: the download byte for byte against the adapter.
 */
export async function benchDownloads(
  params: number,
  reps: number,
  chunkBytes = 1 << 20,
  streams = Number(process.env.BENCH_DOWNLOAD_STREAMS ?? defaultDownloadStreams()),
): Promise<DownloadBench> {
  const adapter = benchAdapter(params);
  const bytes = params * 4;
  const tensorBytes = bytes / 16;
  const senders: Partial<Record<Mode, DownloadSenders>> = {};
  const sites: Partial<Record<Mode, DownloadSite>> = {};
  const oneStream: Partial<Record<Mode, DownloadSite>> = {};
  const viaGrpc: Partial<Record<Mode, DownloadSite>> = {};
  let frames: Http2Transfer | undefined;
  /** Range downloads and their range calls over the timed repetitions (not the warm-up). */
  const timed = { downloads: 0, ranges: 0 };
  const cases = MODES.flatMap((m) => ARMS.map((a) => [m, a] as const));
  const series = () =>
    Object.fromEntries(MODES.map((m) => [m, Object.fromEntries(ARMS.map((a) => [a, [] as number[]]))])) as Record<Mode, Record<Arm, number[]>>;
  const [wall, main, others, busiest, faults, sender, senderMain] = [series(), series(), series(), series(), series(), series(), series()];
  try {
    senders.two_process = await spawnSenders(params, chunkBytes);
    senders.same_process = await startSenders(params, chunkBytes, adapter);
    for (const m of MODES) sites[m] = await joinDownloadSite(senders[m]!.grpc, streams, 'bench');
    for (const m of MODES) oneStream[m] = await joinDownloadSite(senders[m]!.grpc, 1, 'bench-one-stream');
    for (const m of MODES) viaGrpc[m] = await joinDownloadSite(senders[m]!.grpc, streams, 'bench-grpc-js', 'grpc-js');
    const run = (m: Mode, a: Arm): Promise<NamedTensor[] | number> => {
      const s = senders[m]!;
      switch (a) {
        case 'download':
          return sites[m]!.download(0);
        case 'download_grpc_js':
          return viaGrpc[m]!.download(0);
        case 'download_one_stream':
          return oneStream[m]!.download(0);
        case 'grpc_bare':
          return sites[m]!.drain(0);
        case 'http2':
          return http2Receive(s.http2, bytes).then((h) => {
            if (m === 'two_process') frames = h;
            return bytes;
          });
        case 'tcp':
          return tcpReceive(s.tcp, bytes).then(() => bytes);
        case 'tcp_hash':
          return tcpReceive(s.tcp, bytes, 'hash').then(() => bytes);
        case 'tcp_hash_copy':
          return tcpReceive(s.tcp, bytes, 'hash+copy', tensorBytes).then(() => bytes);
      }
    };
    const check = (m: Mode, a: Arm, got: NamedTensor[] | number): void => {
      if (typeof got === 'number') {
        if (got !== bytes) throw new Error(`the ${m} ${a} arm moved ${got} of ${bytes} bytes`);
        return;
      }
      const same =
        got.length === adapter.length &&
        got.every(
          (t, i) => t.name === adapter[i].name && Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(adapter[i].data.buffer)),
        );
      if (!same) throw new Error(`the ${m} download does not match the adapter`);
    };
    // Warm-up, not reported: the image is encoded at the first download, the workers start, the JIT settles.
    for (const [m, a] of cases) check(m, a, await run(m, a));
    const ranges0 = { ...rangeStats };
    for (let rep = 0; rep < reps; rep++) {
      for (let k = 0; k < cases.length; k++) {
        const [m, a] = cases[(k + rep) % cases.length];
        const pid = senders[m]!.pid;
        const s0 = pid === undefined ? undefined : threadCpuMs(pid);
        const c0 = threadCpuMs();
        const t = now();
        const got = await run(m, a);
        wall[m][a].push(now() - t);
        const c1 = threadCpuMs();
        const s1 = pid === undefined ? undefined : threadCpuMs(pid);
        if (c0 && c1) {
          const c = cpuBetween(c0, c1);
          main[m][a].push(c.main);
          others[m][a].push(c.others);
          busiest[m][a].push(c.busiest);
          faults[m][a].push(c.minorFaults);
        }
        if (s0 && s1) {
          const c = cpuBetween(s0, s1);
          sender[m][a].push(c.main + c.others);
          senderMain[m][a].push(c.main);
        }
        check(m, a, got);
      }
    }
    timed.downloads = rangeStats.downloads - ranges0.downloads;
    timed.ranges = rangeStats.ranges - ranges0.ranges;
  } finally {
    for (const m of MODES) sites[m]?.close();
    for (const m of MODES) oneStream[m]?.close();
    for (const m of MODES) viaGrpc[m]?.close();
    for (const m of MODES) await senders[m]?.close();
  }
  const figures = (m: Mode, a: Arm): ArmFigures => {
    const ratios = wall[m][a].map((s, i) => wall[m].tcp[i] / s);
    return {
      seconds: wall[m][a],
      mb_per_second: bytes / median(wall[m][a]) / 1e6,
      over_tcp: median(ratios),
      over_tcp_min: Math.min(...ratios),
      over_tcp_max: Math.max(...ratios),
      ...(main[m][a].length
        ? {
            main_thread_cpu_ms: median(main[m][a]),
            other_threads_cpu_ms: median(others[m][a]),
            busiest_other_thread_cpu_ms: median(busiest[m][a]),
            minor_faults: median(faults[m][a]),
          }
        : {}),
      ...(sender[m][a].length ? { sender_main_thread_cpu_ms: median(senderMain[m][a]), sender_process_cpu_ms: median(sender[m][a]) } : {}),
    };
  };
  const arms = (m: Mode) => Object.fromEntries(ARMS.map((a) => [a, figures(m, a)])) as Record<Arm, ArmFigures>;
  const two = arms('two_process');
  const same = arms('same_process');
  return {
    bytes,
    repetitions: reps,
    chunk_bytes: chunkBytes,
    download_streams: streams,
    range_transport: rangeTransportOf(streams),
    parallel_downloads: timed.downloads,
    ranges_per_parallel_download: timed.ranges / Math.max(1, timed.downloads),
    http2_data_events: frames?.dataEvents ?? 0,
    http2_largest_data_event_bytes: frames?.largestEvent ?? 0,
    arms_two_process: two,
    arms_same_process: same,
    download_over_tcp_two_process: two.download.over_tcp,
    download_over_tcp_same_process: same.download.over_tcp,
    download_goal: 0.5,
    download_goal_met: two.download.over_tcp >= 0.5 ? 1 : 0,
  };
}

/** The table rows of a DownloadBench (bench/run.ts prints them): the two-process arms, then one same-process row. */
export function downloadRows(d: DownloadBench): [string, string, string, string][] {
  const a = d.arms_two_process;
  const cpu = (f: ArmFigures): string =>
    f.main_thread_cpu_ms === undefined
      ? ''
      : `; CPU ms receiver main ${f.main_thread_cpu_ms.toFixed(0)}, others ${f.other_threads_cpu_ms!.toFixed(0)} (busiest ${f.busiest_other_thread_cpu_ms!.toFixed(0)})` +
        (f.sender_process_cpu_ms === undefined ? '' : `; sender main ${f.sender_main_thread_cpu_ms!.toFixed(0)}, all ${f.sender_process_cpu_ms.toFixed(0)}`);
  const pct = (x: number): string => `${(100 * x).toFixed(0)}%`;
  const mib = d.bytes / 2 ** 20;
  const s = d.arms_same_process;
  return [
    [
      `download ${mib} MiB adapter over gRPC, coordinator in another process (SDK receive path, ${d.chunk_bytes >> 10} KiB chunks, ${d.download_streams} range calls on worker threads, ${d.range_transport})`,
      `${a.download.mb_per_second.toFixed(0)} MB/s`,
      `raw TCP ${a.tcp.mb_per_second.toFixed(0)} MB/s`,
      `${pct(a.download.over_tcp)} of TCP (median of ${d.repetitions}, ${pct(a.download.over_tcp_min)}–${pct(a.download.over_tcp_max)}; goal 50%)${cpu(a.download)}`,
    ],
    ...(['download_grpc_js', 'download_one_stream', 'grpc_bare', 'http2', 'tcp_hash', 'tcp_hash_copy', 'tcp'] as const).map(
      (k): [string, string, string, string] => [
        `  same bytes: ${ARM_LABELS[k]}`,
        `${a[k].mb_per_second.toFixed(0)} MB/s`,
        '',
        `${pct(a[k].over_tcp)} of TCP${cpu(a[k])}${k === 'http2' ? `; ${d.http2_data_events} DATA events, largest ${d.http2_largest_data_event_bytes} B` : ''}`,
      ],
    ),
    [
      `  both sides in one process (secondary): SDK download`,
      `${s.download.mb_per_second.toFixed(0)} MB/s`,
      `raw TCP ${s.tcp.mb_per_second.toFixed(0)} MB/s`,
      `${pct(s.download.over_tcp)} of TCP (${pct(s.download.over_tcp_min)}–${pct(s.download.over_tcp_max)}); gRPC reader counts ${pct(s.grpc_bare.over_tcp)}, node:http2 ${pct(s.http2.over_tcp)}, TCP hash ${pct(s.tcp_hash.over_tcp)}, hash+copy ${pct(s.tcp_hash_copy.over_tcp)}${cpu(s.download)}`,
    ],
  ];
}

/** The client the SDK picks for a site's range calls here (download-ranges.ts parallelDownloads). */
function rangeTransportOf(streams: number): string {
  return parallelDownloads({ address: '127.0.0.1:1', downloadStreams: streams }, { ...SITE_CHANNEL_OPTIONS })?.channel.transport ?? 'none (one stream)';
}

const ARM_LABELS: Record<Exclude<Arm, 'download'>, string> = {
  download_grpc_js: 'SDK download, its range calls made by grpc-js (the fallback)',
  download_one_stream: 'SDK download in one stream (downloadStreams 1)',
  grpc_bare: 'gRPC call, reader counts (no checks, landing, hash)',
  http2: 'node:http2 alone, reader counts',
  tcp: 'raw TCP, reader counts (the baseline)',
  tcp_hash: 'raw TCP, reader hashes',
  tcp_hash_copy: 'raw TCP, reader hashes and copies into tensors',
};

if (require.main === module) {
  benchDownloads(16 << 20, Number(process.env.BENCH_DOWNLOAD_REPS ?? 7), Number(process.env.BENCH_DOWNLOAD_CHUNK_BYTES ?? 1 << 20))
    .then((r) => console.log(JSON.stringify({ loadavg: os.loadavg(), ...r }, null, 1)))
    .catch((e: Error) => {
      console.error(e);
      process.exit(1);
    });
}
