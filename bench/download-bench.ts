// The download half of issue 8's transport goal (gRPC transfer >= 50% of raw TCP loopback). Each repetition
// downloads the latest version from a real coordinator through the SDK's receive path (client-sdk/download.ts:
// every frame checked, the chunks landed in the tensors and hashed on the landing worker, the SHA-256 compared with
// the trailer) and moves the same bytes over raw TCP loopback, so both arms of every ratio ran moments apart under
// the same load. The baseline's reader only counts bytes: no copy, no hash. Further arms say where the gap lies:
// the same gRPC call with a reader that only counts, node:http2 alone (the ceiling of any gRPC in node), and raw
// TCP whose reader also hashes, or hashes and copies into tensors, on the same thread. Per arm, the main thread's
// CPU and every other thread's (Linux): on a multi-core host the busiest thread bounds the transfer.
//
// `node dist/bench/run.js download` runs it alone (BENCH_DOWNLOAD_REPS, default 7; BENCH_DOWNLOAD_CHUNK_BYTES, the
// coordinator's transport.chunkBytes, default 1 MiB); the transport section runs it for its download rows.
// `node dist/bench/download-bench.js` prints its JSON.
import { promises as fs, readdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import nacl from 'tweetnacl';
import pino from 'pino';
import { downloadAdapter, SITE_CHANNEL_OPTIONS } from '../client-sdk/download';
import { identityFromSecretKey } from '../client-sdk/identity';
import { Coordinator, loadConfig } from '../coordinator';
import { DOMAINS, joinSignedFields, sign } from '../proto/crypto/signing';
import type { TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import type { HelloResponse__Output } from '../proto/generated/fedtune/v1/HelloResponse';
import { loadFedtuneProto, PROTOCOL_VERSION } from '../proto/load';
import type { NamedTensor } from '../proto/tensors';
import { lcgTensors } from './secagg';
import { rawHttp2, rawTcpSeconds, type Http2Transfer } from './loopback-arms';

const now = (): number => Number(process.hrtime.bigint()) / 1e9;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A joined site's channel to a coordinator serving `adapter` as version 0. */
export interface DownloadSite {
  download(version: number): Promise<NamedTensor[]>;
  /** The same call with a reader that only counts the chunks' bytes: grpc-js and protobuf, no checks, no landing, no hash. */
  drain(version: number): Promise<number>;
  close(): Promise<void>;
}

export async function startDownloadSite(adapter: NamedTensor[], chunkBytes = 1 << 20): Promise<DownloadSite> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-bench-dl-'));
  const config = loadConfig({
    overrides: {
      server: { port: 0 },
      run: { dir },
      // No round starts (it would wait for 1,000 sites): the site only downloads the initial version.
      rounds: { total: 1, minClients: 1000, minUpdates: 1, clientsPerRound: 1000, deadlineMs: 600_000 },
      log: { level: 'silent' },
      auth: { mode: 'tofu' },
      transport: { chunkBytes },
    },
  });
  const coordinator = new Coordinator({
    config,
    initialAdapter: () => adapter,
    baseModel: { name: 'bench', sha256: '0'.repeat(64) },
    adapterConfig: {},
    logger: pino({ level: 'silent' }),
  });
  const committed = new Promise<void>((r) => coordinator.once('roundCommitted', () => r()));
  const { address } = await coordinator.start();
  await committed; // version 0, the initial adapter
  const Ctor = loadFedtuneProto().fedtune.v1.Federation;
  const rpc = new Ctor(address, grpc.credentials.createInsecure(), { ...SITE_CHANNEL_OPTIONS });
  const identity = identityFromSecretKey(nacl.sign.keyPair().secretKey);
  const hello = await new Promise<HelloResponse__Output>((res, rej) =>
    rpc.Hello({ protocol_version: PROTOCOL_VERSION }, (e, r) => (e || !r ? rej(e ?? new Error('empty reply')) : res(r))),
  );
  const signature = sign(
    DOMAINS.join,
    joinSignedFields(PROTOCOL_VERSION, hello.run_id, hello.challenge, 'bench', identity.publicKey, 'none', hello.coordinator!),
    identity.secretKey,
  );
  const token = await new Promise<string>((res, rej) =>
    rpc.Join(
      {
        protocol_version: PROTOCOL_VERSION,
        client_name: 'bench',
        backend: 'none',
        labels: {},
        public_key: identity.publicKey,
        challenge: hello.challenge,
        signature,
        coordinator_key_id: hello.coordinator!.key_id,
      },
      (e, r) => (e || !r ? rej(e ?? new Error('empty reply')) : res(r.session_token)),
    ),
  );
  return {
    download: (version) => downloadAdapter(rpc, token, version),
    drain: (version) =>
      new Promise<number>((resolve, reject) => {
        const call = rpc.DownloadAdapter({ session_token: token, version, evaluation_task_id: '', control_variate: false });
        let n = 0;
        call.on('data', (f: TensorFrame__Output) => (n += f.chunk?.length ?? 0));
        call.on('error', reject);
        call.on('end', () => resolve(n));
      }),
    close: async () => {
      rpc.close();
      await coordinator.stop(500);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** This process's CPU milliseconds so far by thread id, and its minor page faults (Linux /proc; undefined elsewhere). */
function threadCpuMs(): { threads: Map<string, number>; minorFaults: number } | undefined {
  const fields = (f: string): string[] => {
    const st = readFileSync(f, 'utf8');
    return st.slice(st.lastIndexOf(')') + 2).split(' ');
  };
  try {
    const threads = new Map<string, number>();
    for (const t of readdirSync('/proc/self/task')) {
      try {
        const f = fields(`/proc/self/task/${t}/stat`);
        threads.set(t, ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS);
      } catch {
        // a thread that ended between the listing and the read
      }
    }
    return { threads, minorFaults: Number(fields('/proc/self/stat')[7]) };
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
    if (t === String(process.pid)) main = d;
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
 * The arms, each moving the same bytes over loopback in this process:
 *  download   the SDK's real receive path (what the goal measures)
 *  grpc_bare  the same DownloadAdapter call from the same coordinator, a reader that only counts the chunks' bytes
 *  http2      node:http2 alone, the reader counts
 *  tcp        raw TCP, the reader counts (the goal's baseline: a socket read and nothing else)
 *  tcp_hash   raw TCP, the reader also computes the SHA-256 (on the same thread)
 *  tcp_hash_copy  raw TCP, the reader hashes and copies into tensor-sized buffers (on the same thread)
 */
const ARMS = ['download', 'grpc_bare', 'http2', 'tcp', 'tcp_hash', 'tcp_hash_copy'] as const;
type Arm = (typeof ARMS)[number];

export interface ArmFigures {
  /** Wall seconds, one per repetition. */
  seconds: number[];
  mb_per_second: number;
  /** Median over the repetitions of (raw TCP seconds / this arm's seconds), each in the same repetition. */
  over_tcp: number;
  over_tcp_min: number;
  over_tcp_max: number;
  /** Median CPU milliseconds per transfer, the main thread's and every other thread's (worker, GC helpers). */
  main_thread_cpu_ms?: number;
  other_threads_cpu_ms?: number;
  /** The busiest thread but main (for the download, the landing worker; else a GC helper), and minor page faults. */
  busiest_other_thread_cpu_ms?: number;
  minor_faults?: number;
}

export interface DownloadBench {
  bytes: number;
  repetitions: number;
  /** The coordinator's transport.chunkBytes: the data bytes per download message. */
  chunk_bytes: number;
  /** The HTTP/2 arm's last transfer: 'data' events and the largest, with 2^24 - 1 offered as the frame size. */
  http2_data_events: number;
  http2_largest_data_event_bytes: number;
  arms: Record<Arm, ArmFigures>;
  /** The goal: the SDK's download at >= 50% of raw TCP loopback (median of same-repetition ratios). */
  download_over_tcp: number;
  download_goal: 0.5;
  download_goal_met: 0 | 1;
}

/**
 * `reps` repetitions; each runs every arm once on a `params`-value adapter (16 tensors), in an order rotated from
 * one repetition to the next, so that every ratio compares transfers made moments apart under the same load.
 */
export async function benchDownloads(params: number, reps: number, chunkBytes = 1 << 20): Promise<DownloadBench> {
  const adapter = lcgTensors(16, params / 16, 0.1, 9, (i) => `t${String(i).padStart(3, '0')}`);
  const bytes = params * 4;
  const tensorBytes = bytes / 16;
  const site = await startDownloadSite(adapter, chunkBytes);
  let frames: Http2Transfer | undefined;
  // Each arm returns what it received, checked after its timing: every byte of the download against the adapter.
  const run: Record<Arm, () => Promise<NamedTensor[] | number>> = {
    download: () => site.download(0),
    grpc_bare: () => site.drain(0),
    http2: () =>
      rawHttp2(bytes).then((h) => {
        frames = h;
        return bytes;
      }),
    tcp: () => rawTcpSeconds(bytes).then(() => bytes),
    tcp_hash: () => rawTcpSeconds(bytes, 'hash').then(() => bytes),
    tcp_hash_copy: () => rawTcpSeconds(bytes, 'hash+copy', tensorBytes).then(() => bytes),
  };
  const check = (a: Arm, got: NamedTensor[] | number): void => {
    if (typeof got === 'number') {
      if (got !== bytes) throw new Error(`the ${a} arm moved ${got} of ${bytes} bytes`);
      return;
    }
    const same =
      got.length === adapter.length &&
      got.every(
        (t, i) => t.name === adapter[i].name && Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(adapter[i].data.buffer)),
      );
    if (!same) throw new Error('the download does not match the adapter');
  };
  const wall = Object.fromEntries(ARMS.map((a) => [a, [] as number[]])) as Record<Arm, number[]>;
  const main = Object.fromEntries(ARMS.map((a) => [a, [] as number[]])) as Record<Arm, number[]>;
  const others = Object.fromEntries(ARMS.map((a) => [a, [] as number[]])) as Record<Arm, number[]>;
  const busiest = Object.fromEntries(ARMS.map((a) => [a, [] as number[]])) as Record<Arm, number[]>;
  const faults = Object.fromEntries(ARMS.map((a) => [a, [] as number[]])) as Record<Arm, number[]>;
  try {
    // Warm-up, not reported: the image is encoded at the first download, the worker starts, the JIT settles.
    for (const a of ARMS) check(a, await run[a]());
    for (let rep = 0; rep < reps; rep++) {
      for (let k = 0; k < ARMS.length; k++) {
        const a = ARMS[(k + rep) % ARMS.length];
        const c0 = threadCpuMs();
        const t = now();
        const got = await run[a]();
        wall[a].push(now() - t);
        const c1 = threadCpuMs();
        if (c0 && c1) {
          const c = cpuBetween(c0, c1);
          main[a].push(c.main);
          others[a].push(c.others);
          busiest[a].push(c.busiest);
          faults[a].push(c.minorFaults);
        }
        check(a, got);
      }
    }
  } finally {
    await site.close();
  }
  const figures = (a: Arm): ArmFigures => {
    const ratios = wall[a].map((s, i) => wall.tcp[i] / s);
    return {
      seconds: wall[a],
      mb_per_second: bytes / median(wall[a]) / 1e6,
      over_tcp: median(ratios),
      over_tcp_min: Math.min(...ratios),
      over_tcp_max: Math.max(...ratios),
      ...(main[a].length
        ? {
            main_thread_cpu_ms: median(main[a]),
            other_threads_cpu_ms: median(others[a]),
            busiest_other_thread_cpu_ms: median(busiest[a]),
            minor_faults: median(faults[a]),
          }
        : {}),
    };
  };
  const arms = Object.fromEntries(ARMS.map((a) => [a, figures(a)])) as Record<Arm, ArmFigures>;
  return {
    bytes,
    repetitions: reps,
    chunk_bytes: chunkBytes,
    http2_data_events: frames?.dataEvents ?? 0,
    http2_largest_data_event_bytes: frames?.largestEvent ?? 0,
    arms,
    download_over_tcp: arms.download.over_tcp,
    download_goal: 0.5,
    download_goal_met: arms.download.over_tcp >= 0.5 ? 1 : 0,
  };
}

/** The table rows of a DownloadBench (bench/run.ts prints them). */
export function downloadRows(d: DownloadBench): [string, string, string, string][] {
  const a = d.arms;
  const cpu = (f: ArmFigures): string =>
    f.main_thread_cpu_ms === undefined
      ? ''
      : `; CPU ms main ${f.main_thread_cpu_ms.toFixed(0)}, others ${f.other_threads_cpu_ms!.toFixed(0)} (busiest ${f.busiest_other_thread_cpu_ms!.toFixed(0)})`;
  const mib = d.bytes / 2 ** 20;
  return [
    [
      `download ${mib} MiB adapter over gRPC (SDK receive path, ${d.chunk_bytes >> 10} KiB chunks)`,
      `${a.download.mb_per_second.toFixed(0)} MB/s`,
      `raw TCP ${a.tcp.mb_per_second.toFixed(0)} MB/s`,
      `${(100 * a.download.over_tcp).toFixed(0)}% of TCP (median of ${d.repetitions}, ${(100 * a.download.over_tcp_min).toFixed(0)}–${(100 * a.download.over_tcp_max).toFixed(0)}%; goal 50%)${cpu(a.download)}`,
    ],
    ...(['grpc_bare', 'http2', 'tcp_hash', 'tcp_hash_copy', 'tcp'] as const).map((k): [string, string, string, string] => [
      `  same bytes: ${ARM_LABELS[k]}`,
      `${a[k].mb_per_second.toFixed(0)} MB/s`,
      '',
      `${(100 * a[k].over_tcp).toFixed(0)}% of TCP${cpu(a[k])}${k === 'http2' ? `; ${d.http2_data_events} DATA events, largest ${d.http2_largest_data_event_bytes} B` : ''}`,
    ]),
  ];
}

const ARM_LABELS: Record<Exclude<Arm, 'download'>, string> = {
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
