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
import type { Strategy } from '../coordinator/strategy/strategy';
import { classicConfig } from './classic-defaults';
import { loadFedtuneProto, PROTOCOL_VERSION } from '../proto/load';
import type { FederationClient as RawClient, FederationHandlers } from '../proto/generated/fedtune/v1/Federation';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import type { UploadFrame } from '../proto/generated/fedtune/v1/UploadFrame';
import type { UploadResponse__Output } from '../proto/generated/fedtune/v1/UploadResponse';
import { createHash } from 'node:crypto';
import { dataChunks, tensorHeader } from '../proto/tensor-stream';
import { sealUpload, uploadBinding } from '../proto/crypto/sealed-upload';
import { DOMAINS, joinSignedFields, sign } from '../proto/crypto/signing';
import { identityFromSeed, type ClientIdentity } from '../client-sdk/identity';
import type { HelloResponse__Output } from '../proto/generated/fedtune/v1/HelloResponse';
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

export interface HarnessOptions {
  /** Version 0 (default: smallAdapter(0)). */
  readonly initialAdapter?: () => NamedTensor[];
  /** Default: silent. */
  readonly logger?: pino.Logger;
  /**
   * Let the coordinator derive version 0, adapter_config.json and the base identity from config.model.dir, as
   * in production (default: the small hand-made adapter and a fake identity).
   */
  readonly fromModelDir?: boolean;
  /** A strategy built in code, as Coordinator's own option (default: the configured one). */
  readonly strategy?: Strategy;
}

export async function startCoordinator(
  runDir: string,
  rounds: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
  opts: HarnessOptions = {},
): Promise<Harness> {
  // Over the classic defaults (FedAvg, no average…): these tests are about the machinery, written against them.
  const config = classicConfig({
    overrides: {
      server: { port: 0 },
      run: { dir: runDir, seed: 5 },
      rounds: { total: 2, minClients: 2, minUpdates: 2, clientsPerRound: 100, deadlineMs: 20_000, maxAttempts: 3, ...rounds },
      log: { level: 'silent' },
      auth: { mode: 'tofu' },
      // The machinery's tests send every tensor (their trainers move A too), so 'fedit' unless a test sets
      // lora.* itself: 'auto' would pick FFA-LoRA under secagg.enabled (test/ffa-lora.test.ts covers that).
      lora: { aggregation: 'fedit' },
      ...extra,
    },
  });
  const coordinator = new Coordinator({
    config,
    ...(opts.fromModelDir
      ? {}
      : {
          initialAdapter: opts.initialAdapter ?? (() => smallAdapter(0)),
          adapterConfig: { peft_type: 'LORA' },
          baseModel: { name: 'test', sha256: '0'.repeat(64) },
        }),
    logger: opts.logger ?? pino({ level: 'silent' }),
    ...(opts.strategy ? { strategy: opts.strategy } : {}),
  });
  const { address } = await coordinator.start();
  return { coordinator, address, runDir };
}

/**
 * A hand-written Federation service on a loopback port (a relay, a hop, a hostile or partial coordinator): the
 * handlers given, every other method UNIMPLEMENTED.
 */
export async function serveFederation(
  handlers: grpc.UntypedServiceImplementation | Partial<FederationHandlers>,
): Promise<{ server: grpc.Server; address: string }> {
  const server = new grpc.Server();
  server.addService(loadFedtuneProto().fedtune.v1.Federation.service, handlers as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  return { server, address: `127.0.0.1:${port}` };
}

export function rawClient(address: string): RawClient {
  const Ctor = loadFedtuneProto().fedtune.v1.Federation;
  return new Ctor(address, grpc.credentials.createInsecure()) as unknown as RawClient;
}

/** A deterministic identity per site name (tests only). */
export function testIdentity(name: string): ClientIdentity {
  return identityFromSeed(createHash('sha256').update(`fedtune-test-identity:${name}`).digest());
}

export function hello(c: RawClient, version = PROTOCOL_VERSION): Promise<HelloResponse__Output> {
  return new Promise((res, rej) => c.Hello({ protocol_version: version }, (e, r) => (e || !r ? rej(e ?? new Error('empty reply')) : res(r))));
}

export interface JoinedRaw {
  session_token: string;
  client_id: string;
  run_id: string;
  name: string;
  identity: ClientIdentity;
  coordinator: { keyId: string; boxPublicKey: Uint8Array };
}

/** Hello, then Join with the challenge signed by `identity` (default: the name's test identity). */
export async function join(c: RawClient, name: string, version = PROTOCOL_VERSION, identity = testIdentity(name), joinToken = ''): Promise<JoinedRaw> {
  const h = await hello(c);
  const signature = sign(DOMAINS.join, joinSignedFields(version, h.run_id, h.challenge, name, identity.publicKey, 'test', h.coordinator!), identity.secretKey);
  const r = await new Promise<{ session_token: string; client_id: string; run_id: string }>((res, rej) =>
    c.Join(
      {
        protocol_version: version,
        client_name: name,
        backend: 'test',
        labels: {},
        public_key: identity.publicKey,
        challenge: h.challenge,
        signature,
        join_token: joinToken,
        coordinator_key_id: h.coordinator!.key_id,
      },
      (e, r) => (e || !r ? rej(e ?? new Error('empty reply')) : res(r)),
    ),
  );
  return { ...r, name, identity, coordinator: { keyId: h.coordinator!.key_id, boxPublicKey: new Uint8Array(h.coordinator!.box_public_key) } };
}

/** Opens the task stream and resolves with the first TrainTask. */
export function nextTask(c: RawClient, token: string): { task: Promise<TrainTask__Output>; stream: grpc.ClientReadableStream<TaskEvent__Output> } {
  const stream = c.StreamTasks({ session_token: token });
  stream.on('error', () => undefined);
  const task = new Promise<TrainTask__Output>((res) => stream.on('data', (ev: TaskEvent__Output) => ev.train && res(ev.train)));
  return { task, stream };
}

export interface UploadHeaderFields {
  /** The joined client (its token, identity and the coordinator's key). */
  who: JoinedRaw;
  task: TrainTask__Output;
  token?: string;
  numExamples?: number;
  version?: number;
  round?: number;
  baseVersion?: number;
  taskId?: string;
  baseManifestSha256?: string;
  chunkBytes?: number;
  /** Sign with this key instead of the client's (forgeries). */
  signWith?: Uint8Array;
}

/** Frames of a well-formed sealed, signed upload, to be tampered with by the caller. */
export function uploadFrames(h: UploadHeaderFields, delta: TensorList): UploadFrame[] {
  const version = h.version ?? PROTOCOL_VERSION;
  const tensors = tensorHeader(delta, h.chunkBytes);
  // The one binding builder the site and the coordinator use, over the task with the caller's tampering applied.
  const task = {
    ...h.task,
    task_id: h.taskId ?? h.task.task_id,
    round: h.round ?? h.task.round,
    base_version: h.baseVersion ?? h.task.base_version,
    base_manifest_sha256: h.baseManifestSha256 ?? h.task.base_manifest_sha256,
  };
  const binding = uploadBinding(h.who.run_id, h.who.client_id, task, h.numExamples ?? 10, version);
  const sealed = sealUpload({
    binding,
    tensors,
    plaintextChunks: dataChunks(delta, h.chunkBytes),
    coordinator: h.who.coordinator,
    identitySecretKey: h.signWith ?? h.who.identity.secretKey,
  });
  return [
    {
      header: {
        protocol_version: version,
        session_token: h.token ?? h.who.session_token,
        task_id: binding.taskId,
        round: binding.round,
        base_version: binding.baseVersion,
        num_examples: binding.numExamples,
        tensors,
        sealed: sealed.envelope,
      },
    },
    ...sealed.chunks.map((chunk) => ({ chunk })),
    { trailer: { chunk_count: sealed.chunks.length, sha256: sealed.envelope.ciphertext_sha256 } },
  ];
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

/** Every file under dir with its bytes, to search for what must never be persisted. */
export async function snapshotBytes(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  async function walk(d: string): Promise<void> {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.set(path.relative(dir, p), await fs.readFile(p));
    }
  }
  await walk(dir);
  return out;
}

/** Adds `seed`-derived constants to the global adapter; optional delay orders arrivals in tests. */
export class ConstantTrainer implements Trainer {
  readonly backend = 'test';
  constructor(
    private readonly value: number,
    private readonly numExamples = 10,
    private readonly delayMs = 0,
  ) {}
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

/** The gRPC error a call failed with (the promise must reject; resolving is a test failure). */
export async function refusal(p: Promise<unknown>): Promise<grpc.ServiceError> {
  return p.then(
    () => Promise.reject(new Error('the call should have been refused')),
    (e: grpc.ServiceError) => e,
  );
}

/**
 * Expects `act` to be refused with `code` and a message containing `message`, leaving `runDir` exactly as it
 * was (same files, sizes and mtimes).
 */
export async function expectRefused(runDir: string, act: () => Promise<unknown>, code: grpc.status, message: string): Promise<grpc.ServiceError> {
  const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });
  const before = await snapshot(runDir);
  const err = await refusal(act());
  expect(grpc.status[err.code], err.details).to.equal(grpc.status[code]);
  expect(err.details).to.contain(message);
  expect(await snapshot(runDir), 'a refused call must leave the run directory unchanged').to.deep.equal(before);
  return err;
}

/** An upload's outcome as a promise: rejects with the gRPC error (for refusal / expectRefused). */
export async function upload(c: RawClient, frames: readonly UploadFrame[]): Promise<UploadResponse__Output> {
  const r = await sendUpload(c, frames);
  if (r.err) throw r.err;
  return r.ok!;
}

/** ReportMetrics as a promise (rejects with the gRPC error). */
export function reportMetrics(c: RawClient, token: string, taskId: string, round: number, metrics: Record<string, number> = { train_loss: 1 }): Promise<void> {
  return new Promise((res, rej) =>
    c.ReportMetrics({ session_token: token, task_id: taskId, round, num_examples: 10, backend: 'test', metrics }, (e) => (e ? rej(e) : res())),
  );
}

/** DownloadAdapter: resolves with the frame count when the stream ends, rejects with its error. */
export function download(c: RawClient, token: string, version: number): Promise<number> {
  return new Promise((res, rej) => {
    let n = 0;
    const call = c.DownloadAdapter({ session_token: token, version });
    call.on('data', () => n++);
    call.on('end', () => res(n));
    call.on('error', rej);
  });
}

/** StreamTasks: resolves with the first event, rejects with the stream's error (the stream is then cancelled). */
export function firstTaskEvent(c: RawClient, token: string): Promise<TaskEvent__Output> {
  return new Promise((res, rej) => {
    const s = c.StreamTasks({ session_token: token });
    s.on('error', rej);
    s.on('data', (ev: TaskEvent__Output) => {
      res(ev);
      s.cancel();
    });
  });
}

/** Resolves once the coordinator committed version 0 and waits for clients (nothing is being written). */
export async function settled(h: Harness, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (h.coordinator.engine.phase !== 'WAITING_FOR_CLIENTS') {
    if (Date.now() > end)
      throw new Error(`settled: the coordinator is still in phase ${h.coordinator.engine.phase} after ${timeoutMs} ms (waiting for WAITING_FOR_CLIENTS)`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Deterministic, distinct deltas per site: a cheap hash of (site, element). */
export function siteDelta(name: string, like: TensorList): NamedTensor[] {
  let h = 2166136261;
  for (const ch of name) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return like.map((t, k) => ({ ...t, data: Float32Array.from(t.data, (_, i) => (((Math.imul(h + k * 7919 + i, 2654435761) >>> 0) % 20001) - 10000) / 1e5) }));
}
