// CPU time per download on each side of issue 8's download (gRPC transfer >= 50% of raw TCP loopback), where
// wall figures mean little (a loaded 2-core box): the sending process's main thread and all its threads, and the
// receiving process's, per parallel download of `--mib` MiB. The sender is a real coordinator in a child process
// (bench/fixtures/download-sender.ts), or with `--bare` a bare grpc-js server answering the same requests from the
// same encoded image (coordinator/download-image.ts, download-ranges.ts) with no session, door, metrics or
// coordinator state: the difference is what the coordinator's serve path adds. The receiver is the SDK's
// parallel download (client-sdk/download-ranges.ts) with `--streams` range calls, made by the workers' own HTTP/2
// client or with `--transport grpc-js` by grpc-js.
// Usage: node dist/bench/download-serve-probe.js [--bare] [--mib 64] [--streams 8] [--reps 15] [--transport http2|grpc-js]
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs, readdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { downloadAdapter, SITE_CHANNEL_OPTIONS } from '../client-sdk/download';
import { parallelDownloads } from '../client-sdk/download-ranges';
import { answerFrames, askOf } from '../coordinator/download-ranges';
import { EncodedFrame, encodeImage, preEncodedDownloads } from '../coordinator/download-image';
import type { DownloadRequest__Output } from '../proto/generated/fedtune/v1/DownloadRequest';
import { loadFedtuneProto } from '../proto/load';
import { pieceHashes } from '../proto/pieces';
import { benchJoin } from './bench-join';
import { benchAdapter } from './download-site';

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const CHUNK = 1 << 20;

/**
 * CPU ms so far of `pid`: its main thread's, all its threads', the kernel's share (socket reads, page faults) and
 * each thread's. Run time from /proc/<pid>/task/<tid>/schedstat (nanoseconds: 10 ms ticks are too coarse for a
 * download's worker threads), system time from stat (ticks).
 */
function cpuMs(pid: number): { main: number; all: number; sys: number; byName: Map<string, number> } {
  let main = 0;
  let all = 0;
  let sys = 0;
  const byName = new Map<string, number>();
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      const ms = Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
      all += ms;
      sys += Number(f[12]) * 10;
      byName.set(t === String(pid) ? 'main' : t, ms);
      if (t === String(pid)) main = ms;
    } catch {
      // a thread that ended meanwhile
    }
  }
  return { main, all, sys, byName };
}

/** Per-download CPU ms of each thread that ran between two readings, busiest first (worker threads, GC helpers…). */
function byThreadBetween(a: Map<string, number>, b: Map<string, number>, reps: number): number[] {
  const out: number[] = [];
  for (const [k, v] of b) {
    const d = (v - (a.get(k) ?? 0)) / reps;
    if (d > 0 && k !== 'main') out.push(Number(d.toFixed(1)));
  }
  return out.sort((x, y) => y - x);
}

/** The bare sender: the same image and range answers as the coordinator's, nothing else. Prints its address. */
async function bareMain(params: number): Promise<void> {
  const Federation = loadFedtuneProto().fedtune.v1.Federation;
  const encode = Federation.service.DownloadAdapter.responseSerialize;
  const adapter = benchAdapter(params);
  const pieces = { ...pieceHashes(adapter), maxRangeCalls: 16 };
  const image = encodeImage(adapter, CHUNK, encode, pieces);
  const total = params * 4;
  const server = new grpc.Server({ 'grpc.max_concurrent_streams': 1_000_000 });
  server.addService(preEncodedDownloads(Federation.service), {
    DownloadAdapter(call: grpc.ServerWritableStream<DownloadRequest__Output, unknown>) {
      const it = answerFrames(image, askOf(call.request, 0, total, pieces), CHUNK, (n) => new EncodedFrame(encode({ trailer: { chunk_count: n } })));
      const go = (): void => {
        for (let r = it.next(); !r.done; r = it.next()) if (!call.write(r.value)) return void call.once('drain', go);
        call.end();
      };
      go();
    },
  });
  const port = await new Promise<number>((r, j) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? j(e) : r(p))));
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
  console.log(JSON.stringify({ msg: 'listening', grpc: `127.0.0.1:${port}` }));
}

async function probeMain(): Promise<void> {
  const params = (Number(arg('mib', '64')) << 20) / 4;
  const streams = Number(arg('streams', '8'));
  const reps = Number(arg('reps', '15'));
  const bare = process.argv.includes('--bare');
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-serve-probe-'));
  const child: ChildProcess = bare
    ? spawn(process.execPath, [__filename, '--serve-bare', '--mib', arg('mib', '64')], { stdio: ['pipe', 'pipe', 'inherit'] })
    : spawn(process.execPath, [path.join(__dirname, 'fixtures', 'download-sender.js')], {
        stdio: ['pipe', 'pipe', 'inherit'],
        env: { ...process.env, BENCH_PARAMS: String(params), BENCH_CHUNK_BYTES: String(CHUNK), BENCH_RUN_DIR: dir },
      });
  process.once('exit', () => child.kill('SIGKILL'));
  const address = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i >= 0) resolve((JSON.parse(buf.slice(0, i)) as { grpc: string }).grpc);
    });
    child.once('exit', (c) => reject(new Error(`the sender exited (${c})`)));
  });
  const rpc = new (loadFedtuneProto().fedtune.v1.Federation)(address, grpc.credentials.createInsecure(), { ...SITE_CHANNEL_OPTIONS });
  const token = bare ? 'bare' : (await benchJoin(rpc, 'probe')).sessionToken;
  const transport = arg('transport', 'http2') === 'grpc-js' ? 'grpc-js' : 'http2';
  const parallel = parallelDownloads({ address, downloadStreams: streams, rangeTransport: transport }, { ...SITE_CHANNEL_OPTIONS });
  const download = () => downloadAdapter(rpc, token, 0, undefined, false, parallel);
  for (let i = 0; i < 2; i++) await download(); // warm-up: channels, workers, JIT, the image
  const [s0, r0, t0] = [cpuMs(child.pid!), cpuMs(process.pid), process.hrtime.bigint()];
  for (let i = 0; i < reps; i++) await download();
  const [s1, r1, t1] = [cpuMs(child.pid!), cpuMs(process.pid), process.hrtime.bigint()];
  const per = (a: number, b: number): number => Number(((b - a) / reps).toFixed(1));
  console.log(
    JSON.stringify({
      probe: 'download-serve',
      sender: bare ? 'bare grpc-js' : 'coordinator',
      mib: params / (1 << 18),
      streams,
      transport: parallel?.channel.transport,
      reps,
      load: os.loadavg(),
      wall_ms_per_download: Number((Number(t1 - t0) / 1e6 / reps).toFixed(1)),
      sender_main_cpu_ms: per(s0.main, s1.main),
      sender_all_cpu_ms: per(s0.all, s1.all),
      receiver_main_cpu_ms: per(r0.main, r1.main),
      receiver_all_cpu_ms: per(r0.all, r1.all),
      receiver_sys_cpu_ms: per(r0.sys, r1.sys),
      receiver_other_threads_ms: byThreadBetween(r0.byName, r1.byName, reps),
      sender_sys_cpu_ms: per(s0.sys, s1.sys),
    }),
  );
  rpc.close();
  child.stdin!.end();
  await fs.rm(dir, { recursive: true, force: true });
  process.exit(0);
}

if (process.argv.includes('--serve-bare')) void bareMain((Number(arg('mib', '64')) << 20) / 4);
else
  probeMain().catch((e: Error) => {
    console.error(`probe: ${e.message}`);
    process.exit(1);
  });
