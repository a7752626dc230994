// Coordinator peak RSS against the number of sites: N sites (sessions on one channel, driven from this process)
// each upload a sealed 1M-parameter delta to a real coordinator process; its peak RSS (getrusage maxrss) is
// reported with the bytes all the updates hold together, so the growth with N is visible. The coordinator folds
// each update into its running sum on arrival and keeps nothing else of it in memory (the sealed bytes go to
// the round spool on disk), so peak RSS should not depend on N beyond the bound stated in the README.
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { identityFromSeed } from '../client-sdk/identity';
import { sealDelta, sendSealed } from '../client-sdk/sealed-sender';
import { DOMAINS, joinSignedFields, sign } from '../proto/crypto/signing';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { HelloResponse__Output } from '../proto/generated/fedtune/v1/HelloResponse';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import { DEFAULT_CHUNK_BYTES, PROTOCOL_VERSION, loadFedtuneProto } from '../proto/load';
import { lcgTensors } from './secagg';

export interface MemoryRow {
  readonly sites: number;
  readonly params: number;
  readonly update_bytes_total: number;
  readonly coordinator_rss_at_start_mb: number;
  readonly coordinator_peak_rss_mb: number;
  readonly seconds: number;
}

async function freePort(): Promise<number> {
  const net = await import('node:net');
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as import('node:net').AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

const unary = <Res>(f: (cb: (e: grpc.ServiceError | null, r?: Res) => void) => void): Promise<Res> =>
  new Promise((resolve, reject) => f((e, r) => (e || !r ? reject(e ?? new Error('empty reply')) : resolve(r))));

export async function benchCoordinatorMemory(sites: number, params = 1 << 20, concurrency = 4): Promise<MemoryRow> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-bench-mem-'));
  const port = await freePort();
  const script = path.join(__dirname, 'fixtures', 'memory-coordinator.js');
  const n = String(sites);
  const args = [
    '--server.port',
    String(port),
    '--run.dir',
    dir,
    '--rounds.total',
    '1',
    '--rounds.minClients',
    n,
    '--rounds.minUpdates',
    n,
    '--rounds.clientsPerRound',
    n,
  ];
  args.push('--rounds.deadlineMs', '3600000', '--auth.mode', 'tofu', '--log.level', 'warn', '--auth.challengeTtlMs', '600000');
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, BENCH_PARAMS: String(params) } });
  const lines: Record<string, number | string>[] = [];
  const seen = (msg: string): Promise<Record<string, number | string>> =>
    new Promise((resolve, reject) => {
      const look = (): boolean => {
        const l = lines.find((x) => x.msg === msg);
        if (l) resolve(l);
        return l !== undefined;
      };
      if (look()) return;
      child.stdout!.on('data', () => look());
      child.once('exit', (code) => (look() ? undefined : reject(new Error(`coordinator exited ${code} before "${msg}"`))));
    });
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, number | string>);
      } catch {
        // not ours
      }
    }
  });
  const start = await seen('listening');
  const t0 = Date.now();
  const Ctor = loadFedtuneProto().fedtune.v1.Federation;
  const rpc = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 8 << 20 }) as unknown as RawClient;
  const delta = lcgTensors(4, params / 4, 0.01, 7, (i) => `t${i}`);
  // Join every site and open its task stream; the round starts once all N are connected.
  const joined: {
    token: string;
    clientId: string;
    runId: string;
    coordinator: { keyId: string; boxPublicKey: Uint8Array };
    secretKey: Uint8Array;
    task: Promise<TrainTask__Output>;
    stream: grpc.ClientReadableStream<TaskEvent__Output>;
  }[] = [];
  for (let i = 0; i < sites; i++) {
    const seed = Buffer.alloc(32);
    seed.writeUInt32BE(i + 1);
    const id = identityFromSeed(seed);
    const name = `bench-${i}`;
    const hello = await unary<HelloResponse__Output>((cb) => rpc.Hello({ protocol_version: PROTOCOL_VERSION }, cb));
    const signature = sign(
      DOMAINS.join,
      joinSignedFields(PROTOCOL_VERSION, hello.run_id, hello.challenge, name, id.publicKey, 'bench', hello.coordinator!),
      id.secretKey,
    );
    const j = await unary<{ session_token: string; client_id: string }>((cb) =>
      rpc.Join(
        {
          protocol_version: PROTOCOL_VERSION,
          client_name: name,
          backend: 'bench',
          labels: {},
          public_key: id.publicKey,
          challenge: hello.challenge,
          signature,
          coordinator_key_id: hello.coordinator!.key_id,
        },
        cb,
      ),
    );
    const stream = rpc.StreamTasks({ session_token: j.session_token });
    stream.on('error', () => undefined);
    const task = new Promise<TrainTask__Output>((r) => stream.on('data', (ev: TaskEvent__Output) => ev.train && r(ev.train)));
    joined.push({
      token: j.session_token,
      clientId: j.client_id,
      runId: hello.run_id,
      coordinator: { keyId: hello.coordinator!.key_id, boxPublicKey: new Uint8Array(hello.coordinator!.box_public_key) },
      secretKey: id.secretKey,
      task,
      stream,
    });
  }
  // Upload with a few in flight at a time (sealing here is part of the run, not of the coordinator's memory).
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < joined.length) {
      const s = joined[next++];
      const task = await s.task;
      const ctx = {
        token: s.token,
        runId: s.runId,
        clientId: s.clientId,
        coordinator: s.coordinator,
        identitySecretKey: s.secretKey,
        chunkBytes: DEFAULT_CHUNK_BYTES,
      };
      await sendSealed(rpc, sealDelta(ctx, task, delta, 10));
      await unary((cb) =>
        rpc.ReportMetrics({ session_token: s.token, task_id: task.task_id, round: task.round, num_examples: 10, backend: 'bench', metrics: { loss: 1 } }, cb),
      );
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const done = await seen('done');
  for (const s of joined) s.stream.cancel();
  rpc.close();
  await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(null)));
  await fs.rm(dir, { recursive: true, force: true });
  if (done.participants !== sites) throw new Error(`round committed ${done.participants} of ${sites} updates`);
  return {
    sites,
    params,
    update_bytes_total: sites * params * 4,
    coordinator_rss_at_start_mb: Number(start.rssBytes) / 1e6,
    coordinator_peak_rss_mb: Number(done.maxRssBytes) / 1e6,
    seconds: (Date.now() - t0) / 1000,
  };
}
