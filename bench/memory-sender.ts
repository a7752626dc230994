// One sender process of the memory bench (bench/coordinator-memory.ts): joins sites BENCH_FROM…BENCH_TO − 1 of the
// coordinator on 127.0.0.1:BENCH_PORT (one channel, a task stream per site), then, once each site's task arrives,
// uploads a sealed delta of BENCH_PARAMS parameters for it and reports its metrics, BENCH_CONCURRENCY at a time.
// Exits 0 when every one of its sites was answered.
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

const unary = <Res>(f: (cb: (e: grpc.ServiceError | null, r?: Res) => void) => void): Promise<Res> =>
  new Promise((resolve, reject) => f((e, r) => (e || !r ? reject(e ?? new Error('empty reply')) : resolve(r))));

async function main(): Promise<void> {
  const env = (k: string): number => Number(process.env[k]);
  const [port, params, from, to, concurrency] = [env('BENCH_PORT'), env('BENCH_PARAMS'), env('BENCH_FROM'), env('BENCH_TO'), env('BENCH_CONCURRENCY')];
  const Ctor = loadFedtuneProto().fedtune.v1.Federation;
  const rpc = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 8 << 20 }) as unknown as RawClient;
  const delta = lcgTensors(4, params / 4, 0.01, 7, (i) => `t${i}`);
  const joined: {
    token: string;
    clientId: string;
    runId: string;
    coordinator: { keyId: string; boxPublicKey: Uint8Array };
    secretKey: Uint8Array;
    task: Promise<TrainTask__Output>;
    stream: grpc.ClientReadableStream<TaskEvent__Output>;
  }[] = [];
  for (let i = from; i < to; i++) {
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
  for (const s of joined) s.stream.cancel();
  rpc.close();
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    console.error(e.message);
    process.exit(1);
  },
);
