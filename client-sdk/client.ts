// The client SDK: receive → train → send (cf. NVFlare's client API). A site gives it the coordinator's
// address, a name and a Trainer; run() joins, listens for tasks, downloads the global adapter, trains,
// uploads the delta, reports metrics, and reconnects with backoff when the coordinator goes away.
//
//   const client = new FederationClient({ address: 'coordinator:50051', name: 'hospital-a', trainer });
//   const summary = await client.run();   // resolves when the run finishes
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { FederationClient as GrpcFederationClient } from '../proto/generated/fedtune/v1/Federation';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import type { TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import type { UploadFrame } from '../proto/generated/fedtune/v1/UploadFrame';
import { DEFAULT_CHUNK_BYTES, PROTOCOL_VERSION, loadFedtuneProto } from '../proto/load';
import { ProtocolError, TensorStreamDecoder, tensorFrames } from '../proto/tensor-stream';
import { sortByName, subTensors, type NamedTensor } from '../proto/tensors';
import { DEFAULT_BACKOFF, backoffDelay, type BackoffOptions } from './backoff';
import type { Trainer, TrainingPlan } from './trainer';

export interface FederationClientOptions {
  readonly address: string;
  /** Stable site name; the coordinator derives the client id from it. */
  readonly name: string;
  readonly trainer: Trainer;
  readonly credentials?: grpc.ChannelCredentials;
  readonly labels?: Record<string, string>;
  readonly backoff?: BackoffOptions;
  readonly chunkBytes?: number;
  /** Refuse to train when the coordinator's base model differs (sha256 of model.safetensors). */
  readonly baseModelSha256?: string;
  /** Progress and problems; default: silent. */
  readonly log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

export interface RunSummary {
  readonly clientId: string;
  readonly tasksCompleted: number;
  readonly finalVersion: number;
  readonly reason: string;
}

export interface TaskDone {
  readonly taskId: string;
  readonly round: number;
  readonly numExamples: number;
  readonly metrics: Record<string, number>;
}

/** Errors after which reconnecting cannot help. */
const FATAL = new Set<status>([status.FAILED_PRECONDITION, status.INVALID_ARGUMENT, status.PERMISSION_DENIED, status.UNIMPLEMENTED]);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class FederationClient extends EventEmitter {
  private readonly rpc: GrpcFederationClient;
  private stopped = false;
  private token = '';
  private clientId = '';
  private tasksCompleted = 0;
  private current: { taskId: string; abort: AbortController } | null = null;
  private stream: grpc.ClientReadableStream<TaskEvent__Output> | null = null;

  constructor(private readonly opts: FederationClientOptions) {
    super();
    const Ctor = loadFedtuneProto().fedtune.v1.Federation;
    this.rpc = new Ctor(opts.address, opts.credentials ?? grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 30_000,
    }) as unknown as GrpcFederationClient;
  }

  private log(level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void {
    this.opts.log?.(level, msg, { client: this.opts.name, ...fields });
  }

  /** Joins and serves tasks until the run finishes or stop() is called. */
  async run(): Promise<RunSummary> {
    let failures = 0;
    while (!this.stopped) {
      try {
        await this.join();
        failures = 0;
        const finished = await this.serveTasks();
        if (finished) return { clientId: this.clientId, tasksCompleted: this.tasksCompleted, ...finished };
      } catch (e) {
        const code = (e as grpc.ServiceError).code;
        if (FATAL.has(code) || e instanceof ProtocolError) throw e;
        if (this.stopped) break;
        const delay = backoffDelay(failures++, this.opts.backoff ?? DEFAULT_BACKOFF);
        this.log('warn', 'connection lost; retrying', { error: (e as Error).message, delayMs: delay });
        this.emit('reconnecting', { attempt: failures, delayMs: delay });
        await sleep(delay);
      }
    }
    return { clientId: this.clientId, tasksCompleted: this.tasksCompleted, finalVersion: -1, reason: 'stopped' };
  }

  /** Leaves the federation and closes the channel; a running training step is aborted. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.abort.abort(new Error('client stopping'));
    if (this.token) {
      await new Promise<void>((r) => this.rpc.Leave({ session_token: this.token, reason: 'client stopping' }, { deadline: Date.now() + 2000 }, () => r()));
    }
    this.stream?.cancel();
    this.rpc.close();
  }

  private join(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.rpc.Join(
        { protocol_version: PROTOCOL_VERSION, client_name: this.opts.name, backend: this.opts.trainer.backend, labels: this.opts.labels ?? {} },
        { deadline: Date.now() + 10_000 },
        (err, res) => {
          if (err || !res) return reject(err ?? new Error('empty join response'));
          if (this.opts.baseModelSha256 && res.base_model_sha256 !== this.opts.baseModelSha256) {
            return reject(new ProtocolError(status.FAILED_PRECONDITION, `coordinator fine-tunes base model ${res.base_model_sha256}; this site has ${this.opts.baseModelSha256}`));
          }
          this.token = res.session_token;
          this.clientId = res.client_id;
          this.log('info', 'joined', { clientId: res.client_id, runId: res.run_id });
          this.emit('joined', { clientId: res.client_id, runId: res.run_id });
          resolve();
        },
      );
    });
  }

  /** Handles task events in order; resolves when the run finishes, rejects when the stream breaks. */
  private serveTasks(): Promise<{ finalVersion: number; reason: string } | null> {
    return new Promise((resolve, reject) => {
      const stream = this.rpc.StreamTasks({ session_token: this.token });
      this.stream = stream;
      let chain = Promise.resolve();
      let done = false;
      stream.on('data', (ev: TaskEvent__Output) => {
        if (ev.cancel) {
          if (this.current?.taskId === ev.cancel.task_id) this.current.abort.abort(new Error(`cancelled: ${ev.cancel.reason}`));
          return;
        }
        if (ev.finished) {
          done = true;
          const fin = ev.finished;
          chain.then(() => resolve({ finalVersion: fin.final_version, reason: fin.reason }));
          return;
        }
        if (ev.train) {
          const task = ev.train;
          chain = chain.then(() => this.handleTask(task)).catch((e: Error) => this.log('warn', 'task failed', { taskId: task.task_id, error: e.message }));
        }
      });
      stream.on('error', (e) => {
        if (!done) chain.then(() => reject(e));
      });
      stream.on('end', () => {
        if (!done) chain.then(() => reject(Object.assign(new Error('task stream closed by the coordinator'), { code: status.UNAVAILABLE })));
      });
    });
  }

  private async handleTask(t: TrainTask__Output): Promise<void> {
    if (this.stopped) return;
    const abort = new AbortController();
    this.current = { taskId: t.task_id, abort };
    try {
      this.emit('task', { taskId: t.task_id, round: t.round, attempt: t.attempt, baseVersion: t.base_version });
      const global = sortByName(await this.download(t.base_version));
      const c = t.config!;
      const plan: TrainingPlan = {
        round: t.round,
        taskId: t.task_id,
        localSteps: c.local_steps,
        batchSize: c.batch_size,
        learningRate: c.learning_rate,
        weightDecay: c.weight_decay,
        maxSeqLen: c.max_seq_len,
        seed: t.seed,
      };
      const out = await this.opts.trainer.train(global, plan, abort.signal);
      abort.signal.throwIfAborted();
      const delta = subTensors(sortByName(out.adapter), global);
      await this.upload(t, delta, out.numExamples);
      const evalMetrics = this.opts.trainer.evaluate ? await this.opts.trainer.evaluate(out.adapter) : {};
      const metrics = { ...out.metrics, ...evalMetrics };
      await this.report(t, out.numExamples, metrics);
      this.tasksCompleted++;
      const done: TaskDone = { taskId: t.task_id, round: t.round, numExamples: out.numExamples, metrics };
      this.log('info', 'task done', { ...done });
      this.emit('taskDone', done);
    } finally {
      this.current = null;
    }
  }

  /** Downloads a global version as a chunked tensor stream. */
  download(version: number): Promise<NamedTensor[]> {
    return new Promise((resolve, reject) => {
      const call = this.rpc.DownloadAdapter({ session_token: this.token, version });
      let dec: TensorStreamDecoder | undefined;
      let settled = false;
      const fail = (e: unknown): void => {
        if (settled) return;
        settled = true;
        call.cancel();
        reject(e);
      };
      call.on('data', (f: TensorFrame__Output) => {
        try {
          if (f.header) dec = new TensorStreamDecoder(f.header, { maxBytes: Number.MAX_SAFE_INTEGER, requireFinite: false });
          else if (f.frame === 'chunk' && f.chunk) {
            if (!dec) throw new ProtocolError(status.INVALID_ARGUMENT, 'chunk before header');
            dec.push(f.chunk);
          } else if (f.trailer) {
            if (!dec) throw new ProtocolError(status.INVALID_ARGUMENT, 'trailer before header');
            settled = true;
            resolve(dec.finish(f.trailer));
          }
        } catch (e) {
          fail(e);
        }
      });
      call.on('error', fail);
      call.on('end', () => fail(new ProtocolError(status.DATA_LOSS, 'download ended without its trailer')));
    });
  }

  private upload(t: TrainTask__Output, delta: NamedTensor[], numExamples: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const call = this.rpc.UploadUpdate((err) => (err ? reject(err) : resolve()));
      void (async () => {
        const frames = tensorFrames(delta, this.opts.chunkBytes ?? DEFAULT_CHUNK_BYTES);
        for (const f of frames) {
          const msg: UploadFrame = f.header
            ? { header: { protocol_version: PROTOCOL_VERSION, session_token: this.token, task_id: t.task_id, round: t.round, base_version: t.base_version, num_examples: numExamples, tensors: f.header } }
            : f;
          if (!call.write(msg)) await new Promise<void>((r) => call.once('drain', r));
        }
        call.end();
      })().catch(reject);
    });
  }

  private report(t: TrainTask__Output, numExamples: number, metrics: Record<string, number>): Promise<void> {
    return new Promise((resolve, reject) =>
      this.rpc.ReportMetrics(
        { session_token: this.token, task_id: t.task_id, round: t.round, num_examples: numExamples, backend: this.opts.trainer.backend, metrics },
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  }
}
