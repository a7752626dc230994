// Shared test fixtures: a real Coordinator on a free loopback port with a small hand-made adapter, a raw
// typed gRPC client for speaking the protocol directly (to send what a well-behaved client never would),
// and a deterministic Trainer for tests about the coordinator rather than the model.
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { Coordinator } from '../coordinator/coordinator';
import { loadConfig } from '../coordinator/config';
import { loadFedtuneProto, PROTOCOL_VERSION } from '../proto/load';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import type { UploadFrame } from '../proto/generated/fedtune/v1/UploadFrame';
import type { UploadResponse__Output } from '../proto/generated/fedtune/v1/UploadResponse';
import { tensorFrames, type Frame } from '../proto/tensor-stream';
import type { NamedTensor, TensorList } from '../proto/tensors';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';

export const PREFIX = 'base_model.model.transformer.h.0.attn.c_attn';

/** A two-tensor adapter shaped like one LoRA pair (A [2,3], B [4,2]). */
export function smallAdapter(fill = 0): NamedTensor[] {
  return [
    { name: `${PREFIX}.lora_A.weight`, dtype: 'float32', shape: [2, 3], data: new Float32Array(6).fill(fill) },
    { name: `${PREFIX}.lora_B.weight`, dtype: 'float32', shape: [4, 2], data: new Float32Array(8).fill(fill) },
  ];
}

/** A loopback port that was free a moment ago (for servers that must come back on the same port). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

export async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), `fedtune-${prefix}-`));
}

export interface Harness {
  readonly coordinator: Coordinator;
  readonly address: string;
  readonly runDir: string;
}

export async function startCoordinator(runDir: string, rounds: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<Harness> {
  const config = loadConfig({
    overrides: {
      server: { port: 0 },
      run: { dir: runDir, seed: 5 },
      rounds: { total: 2, minClients: 2, minUpdates: 2, clientsPerRound: 100, deadlineMs: 20_000, maxAttempts: 3, ...rounds },
      log: { level: 'silent' },
      ...extra,
    },
  });
  const coordinator = new Coordinator({
    config,
    initialAdapter: () => smallAdapter(0),
    adapterConfig: { peft_type: 'LORA' },
    baseModel: { name: 'test', sha256: '0'.repeat(64) },
    logger: pino({ level: 'silent' }),
  });
  const { address } = await coordinator.start();
  return { coordinator, address, runDir };
}

export function rawClient(address: string): RawClient {
  const Ctor = loadFedtuneProto().fedtune.v1.Federation;
  return new Ctor(address, grpc.credentials.createInsecure()) as unknown as RawClient;
}

export function join(c: RawClient, name: string, version = PROTOCOL_VERSION): Promise<{ session_token: string; client_id: string }> {
  return new Promise((res, rej) =>
    c.Join({ protocol_version: version, client_name: name, backend: 'test', labels: {} }, (e, r) => (e || !r ? rej(e) : res(r))),
  );
}

/** Opens the task stream and resolves with the first TrainTask. */
export function nextTask(c: RawClient, token: string): { task: Promise<TrainTask__Output>; stream: grpc.ClientReadableStream<TaskEvent__Output> } {
  const stream = c.StreamTasks({ session_token: token });
  stream.on('error', () => undefined);
  const task = new Promise<TrainTask__Output>((res) => stream.on('data', (ev: TaskEvent__Output) => ev.train && res(ev.train)));
  return { task, stream };
}

export interface UploadHeaderFields {
  token: string;
  task: TrainTask__Output;
  numExamples?: number;
  version?: number;
  round?: number;
  baseVersion?: number;
  taskId?: string;
}

/** Frames of a well-formed upload, to be tampered with by the caller. */
export function uploadFrames(h: UploadHeaderFields, delta: TensorList): UploadFrame[] {
  return [...tensorFrames(delta)].map((f: Frame) =>
    f.header
      ? {
          header: {
            protocol_version: h.version ?? PROTOCOL_VERSION,
            session_token: h.token,
            task_id: h.taskId ?? h.task.task_id,
            round: h.round ?? h.task.round,
            base_version: h.baseVersion ?? h.task.base_version,
            num_examples: h.numExamples ?? 10,
            tensors: f.header,
          },
        }
      : (f as UploadFrame),
  );
}

/** Sends frames on one UploadUpdate call and resolves with the reply or the gRPC error. */
export function sendUpload(c: RawClient, frames: readonly UploadFrame[]): Promise<{ ok?: UploadResponse__Output; err?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    const call = c.UploadUpdate((err, res) => resolve(err ? { err } : { ok: res }));
    for (const f of frames) call.write(f);
    call.end();
  });
}

/** Every file under dir with its size and mtime, to prove a rejection wrote nothing. */
export async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string): Promise<void> {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else {
        const st = await fs.stat(p);
        out.push(`${path.relative(dir, p)} ${st.size} ${st.mtimeMs}`);
      }
    }
  }
  await walk(dir);
  return out.sort();
}

/** Adds `seed`-derived constants to the global adapter; optional delay orders arrivals in tests. */
export class ConstantTrainer implements Trainer {
  readonly backend = 'test';
  constructor(private readonly value: number, private readonly numExamples = 10, private readonly delayMs = 0) {}
  async train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal): Promise<TrainOutcome> {
    const end = Date.now() + this.delayMs;
    while (Date.now() < end) {
      signal?.throwIfAborted();
      await new Promise((r) => setTimeout(r, 10));
    }
    signal?.throwIfAborted();
    const adapter = global.map((t) => ({ ...t, data: t.data.map((x) => x + this.value) }));
    return { adapter, numExamples: this.numExamples, metrics: { train_loss: this.value, seed: plan.seed % 1000 } };
  }
}
