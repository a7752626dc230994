// Both sides of the download bench (bench/download-bench.ts). The sending side: a real coordinator serving an
// adapter as version 0, with the loopback baselines' senders beside it (bench/loopback-arms.ts), started in this
// process or in a child process (bench/fixtures/download-sender.ts), as a coordinator runs when deployed. The
// receiving side: a joined site's channel to that coordinator.
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { downloadAdapter, SITE_CHANNEL_OPTIONS } from '../client-sdk/download';
import { parallelDownloads } from '../client-sdk/download-ranges';
import { loadConfig } from '../coordinator';
import { benchCoordinator } from './fixtures/bench-coordinator';
import type { TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import { loadFedtuneProto } from '../proto/load';
import type { NamedTensor } from '../proto/tensors';
import { benchJoin } from './bench-join';
import { http2Sender, tcpSender } from './loopback-arms';
import { lcgTensors } from './secagg';

/** The bench's adapter of `params` float32 values in 16 tensors; the same bytes in every process. */
export const benchAdapter = (params: number): NamedTensor[] => lcgTensors(16, params / 16, 0.1, 9, (i) => `t${String(i).padStart(3, '0')}`);

/** A real coordinator serving `adapter` as version 0 (committed before this resolves), in this process. */
export async function startDownloadCoordinator(
  adapter: NamedTensor[],
  chunkBytes: number,
  runDir?: string,
  /** More of the coordinator's transport section (pieceBytes, maxRangeCallsPerSite). */
  transport: { pieceBytes?: number; maxRangeCallsPerSite?: number } = {},
): Promise<{ address: string; stop(): Promise<void> }> {
  const dir = runDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-bench-dl-')));
  const config = loadConfig({
    overrides: {
      server: { port: 0 },
      run: { dir },
      // No round starts (it would wait for 1,000 sites): the site only downloads the initial version.
      rounds: { total: 1, minClients: 1000, minUpdates: 1, clientsPerRound: 1000, deadlineMs: 600_000 },
      log: { level: 'silent' },
      auth: { mode: 'tofu' },
      transport: { chunkBytes, ...transport },
    },
  });
  const coordinator = benchCoordinator(config, () => adapter);
  const committed = new Promise<void>((r) => coordinator.once('roundCommitted', () => r()));
  const { address } = await coordinator.start();
  await committed; // version 0, the initial adapter
  return {
    address,
    stop: async () => {
      await coordinator.stop(500);
      if (runDir === undefined) await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** The sending side of every arm: the coordinator's gRPC address and the raw TCP and node:http2 senders' ports. */
export interface DownloadSenders {
  grpc: string;
  tcp: number;
  http2: number;
  /** The child's process id when the senders run in a child process. */
  pid?: number;
  close(): Promise<void>;
}

/** Every sender of the bench in this process, moving `params` float32 values. */
export async function startSenders(params: number, chunkBytes: number, adapter = benchAdapter(params), runDir?: string): Promise<DownloadSenders> {
  const coordinator = await startDownloadCoordinator(adapter, chunkBytes, runDir);
  const tcp = await tcpSender(params * 4);
  const h2 = await http2Sender(params * 4);
  return {
    grpc: coordinator.address,
    tcp: tcp.port,
    http2: h2.port,
    close: async () => {
      tcp.close();
      h2.close();
      await coordinator.stop();
    },
  };
}

/**
 * Every sender of the bench in a child process (bench/fixtures/download-sender.ts). Resolves once the child prints
 * its 'listening' line. The child exits when its stdin closes (close(), or this process ending however it ends);
 * close() also kills it after 5 s, and removes its run directory.
 */
export async function spawnSenders(params: number, chunkBytes: number): Promise<DownloadSenders> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-bench-dl-'));
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'download-sender.js')], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, BENCH_PARAMS: String(params), BENCH_CHUNK_BYTES: String(chunkBytes), BENCH_RUN_DIR: dir },
  });
  const kill = (): void => void child.kill('SIGKILL');
  process.once('exit', kill);
  const exited = new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
  const close = async (): Promise<void> => {
    child.stdin.end();
    const timer = setTimeout(kill, 5000);
    await exited;
    clearTimeout(timer);
    process.removeListener('exit', kill);
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    const ready = await new Promise<{ grpc: string; tcp: number; http2: number }>((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          try {
            const m = JSON.parse(line) as { msg?: string; grpc: string; tcp: number; http2: number };
            if (m.msg === 'listening') resolve(m);
          } catch {
            // not ours
          }
        }
      });
      child.once('exit', (code, signal) => reject(new Error(`the download sender exited (${code ?? signal}) before listening`)));
      setTimeout(() => reject(new Error('the download sender did not listen within 120 s')), 120_000).unref();
    });
    return { ...ready, pid: child.pid, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** A joined site's channel to a coordinator serving `adapter` as version 0. */
export interface DownloadSite {
  download(version: number): Promise<NamedTensor[]>;
  /** The same call with a reader that only counts the chunks' bytes: grpc-js and protobuf, no checks, no landing, no hash. */
  drain(version: number): Promise<number>;
  close(): void;
}

/**
 * Joins the coordinator at `address` as a new site (tofu). Its downloads are the SDK's: `streams` range calls
 * (default: the SDK's for this host, defaultDownloadStreams) for a version that lists piece hashes.
 */
export async function joinDownloadSite(address: string, streams?: number, name?: string, rangeTransport?: 'http2' | 'grpc-js'): Promise<DownloadSite> {
  const Ctor = loadFedtuneProto().fedtune.v1.Federation;
  const rpc = new Ctor(address, grpc.credentials.createInsecure(), { ...SITE_CHANNEL_OPTIONS });
  const parallel = parallelDownloads({ address, downloadStreams: streams, rangeTransport }, { ...SITE_CHANNEL_OPTIONS });
  try {
    const { sessionToken: token } = await benchJoin(rpc, name);
    return {
      download: (version) => downloadAdapter(rpc, token, version, undefined, false, parallel),
      drain: (version) =>
        new Promise<number>((resolve, reject) => {
          const call = rpc.DownloadAdapter({ session_token: token, version, evaluation_task_id: '', control_variate: false });
          let n = 0;
          call.on('data', (f: TensorFrame__Output) => (n += f.chunk?.length ?? 0));
          call.on('error', reject);
          call.on('end', () => resolve(n));
        }),
      close: () => rpc.close(),
    };
  } catch (e) {
    rpc.close();
    throw e;
  }
}
