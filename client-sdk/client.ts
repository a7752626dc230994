// The client SDK: receive → train → send (cf. NVFlare's client API). A site gives it the coordinator's
// address, a name and a Trainer; run() joins, listens for tasks, downloads the global adapter, trains,
// uploads the delta, reports metrics, and reconnects with backoff when the coordinator goes away. A task stream that
// drops is reopened at once (with backoff) while the task it brought runs on (task-queue.ts), a SecAgg task too (its
// stage messages come again on the new stream: secagg-inbox.ts); a report whose call broke is sent again (report-retry.ts).
//
//   const client = new FederationClient({ address: 'coordinator:50051', name: 'hospital-a', trainer });
//   const summary = await client.run();   // resolves when the run finishes
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { FederationClient as GrpcFederationClient } from '../proto/generated/fedtune/v1/Federation';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import { DEFAULT_CHUNK_BYTES, loadFedtuneProto } from '../proto/load';
import { ProtocolError } from '../proto/errors';
import { sealDeltaPipelined, sealMaskedPipelined, sendSealedRetrying, type SealContext, type SealedFrames } from './sealed-sender';
import { trainingSignal } from './training-signal';
import { identityFromSecretKey, type ClientIdentity } from './identity';
import { taskNoiseFloorRefusal, checkNoiseFloor, secaggTrust } from './secagg-flow';
import { SecAggInboxes } from './secagg-inbox';
import { SECAGG_RESENT, secaggTask } from './secagg-task';
import { joinCoordinator } from './join';
import { downloadAdapter, SITE_CHANNEL_OPTIONS } from './download';
import { parallelDownloads, type ParallelDownloads } from './download-ranges';
import type { ClientEvents, FederationClientOptions, RunSummary, TaskDone } from './client-options';
import { SecAggLedger } from '../proto/secagg';
import nacl from 'tweetnacl';
import { sortByName, type NamedTensor } from '../proto/tensors';
import { DEFAULT_BACKOFF, backoffDelay, hintedDelay, sleep } from './backoff';
import { checkResolvable, parseAddress, type ParsedAddress } from './address';
import { taskSettings, trainingPlan } from './task-plan';
import { TaskQueue, queuedEvaluation, queuedTrain } from './task-queue';
import { updateToSend } from './lora-update';
import type { EvaluateTask__Output } from '../proto/generated/fedtune/v1/EvaluateTask';
import { runEvaluateTask } from './evaluate-task';
import { declineRequest, declined } from './decline';
import { DEFAULT_REPORT_DEADLINE_MS, REPORT_RESENT, checkReportDeadline, sendReport, type ReportCall, type ReportPolicy, type RetryNote } from './report-retry';
import { keepaliveChannelOptions } from './keepalive';
import { beginScaffoldRound, type ScaffoldRound } from './scaffold-site';
import { memoryControlVariates, type ControlVariateStore } from './scaffold-store';
import { trainableTensors } from '../proto/model/lora-aggregation';
import { LIMITS, retryAfterOf, checkBackend, checkClientName, checkLabels, checkReport, checkString } from '../proto/limits';

export type { ClientEvents, ClientLogger, FederationClientOptions, RunSummary, TaskDone, TaskInfo } from './client-options';

/** Errors after which reconnecting cannot help. */
const FATAL = new Set<status>([status.FAILED_PRECONDITION, status.INVALID_ARGUMENT, status.PERMISSION_DENIED, status.UNIMPLEMENTED]);

export class FederationClient extends EventEmitter<ClientEvents> {
  private readonly rpc: GrpcFederationClient;
  private running = false;
  private stopped = false;
  private channelClosed = false;
  private token = '';
  private clientId = '';
  private tasksCompleted = 0;
  /** Failed connection attempts in a row (the backoff's exponent); a join or a task event ends the run. */
  private failures = 0;
  /** Ends the backoff's wait when stop() is called. */
  private readonly halt = new AbortController();
  /** Tasks already delivered (a re-send is skipped). */
  private readonly completed = new Set<string>();
  /** SecAgg tasks that advertised: their session cannot be joined twice, so a re-send is skipped (and not run again). */
  private readonly advertised = new Set<string>();
  /** Tasks run one at a time, across task streams: a stream that drops does not stop them. */
  private readonly queue = new TaskQueue((id) => this.completed.has(id) || this.advertised.has(id));
  private stream: grpc.ClientReadableStream<TaskEvent__Output> | null = null;
  private readonly identity: ClientIdentity;
  /** SecAgg stage messages per running SecAgg task, held until the task's flow asks for them. */
  private readonly inboxes = new SecAggInboxes();
  private readonly ledger: SecAggLedger;
  private readonly controlVariates: ControlVariateStore;
  private runId = '';
  private coordinator: { keyId: string; boxPublicKey: Uint8Array; signPublicKey: Uint8Array } | null = null;
  private readonly address: ParsedAddress;
  private readonly parallel: ParallelDownloads | undefined;
  private readonly reportPolicy: ReportPolicy;
  /** The keepalive and report deadline this client runs under, as its channel has them (`channelOptions` may override). */
  readonly connection: { readonly keepaliveMs: number; readonly keepaliveTimeoutMs: number; readonly reportDeadlineMs: number };

  constructor(private readonly opts: FederationClientOptions) {
    super();
    // What the coordinator would refuse is refused here, before anything is sent (proto/limits.ts).
    checkClientName(opts.name);
    checkBackend(opts.trainer.backend);
    checkLabels(opts.labels);
    checkString('join_token', opts.joinToken, LIMITS.token, /^[\x21-\x7e]*$/, 'printable ASCII');
    this.address = parseAddress(opts.address); // AddressError (fatal) for a URL, a missing port, …
    this.identity = opts.identity ?? identityFromSecretKey(nacl.sign.keyPair().secretKey);
    this.controlVariates = opts.controlVariates ?? memoryControlVariates();
    this.ledger = opts.secaggLedger ?? new SecAggLedger();
    const Ctor = loadFedtuneProto().fedtune.v1.Federation;
    // Keepalive: how a half-open connection is found, and why not sooner (keepalive.ts).
    const channelOptions = { ...keepaliveChannelOptions(opts.keepalive), ...SITE_CHANNEL_OPTIONS, ...opts.channelOptions };
    this.reportPolicy = { backoff: opts.backoff ?? DEFAULT_BACKOFF, deadlineMs: checkReportDeadline(opts.reportDeadlineMs ?? DEFAULT_REPORT_DEADLINE_MS) };
    const [keepaliveMs, keepaliveTimeoutMs] = [channelOptions['grpc.keepalive_time_ms'], channelOptions['grpc.keepalive_timeout_ms']].map(Number);
    this.connection = { keepaliveMs, keepaliveTimeoutMs, reportDeadlineMs: this.reportPolicy.deadlineMs };
    if (opts.minNoiseMultiplier !== undefined) checkNoiseFloor(opts.minNoiseMultiplier);
    this.rpc = new Ctor(opts.address, opts.credentials ?? grpc.credentials.createInsecure(), channelOptions);
    this.parallel = parallelDownloads(opts, channelOptions);
  }

  private log(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}): void {
    const all = { client: this.opts.name, ...fields };
    this.opts.logger?.[level](all, msg);
    this.opts.log?.(level, msg, all);
  }

  /** Joins and serves tasks until the run finishes or stop() is called. */
  async run(): Promise<RunSummary> {
    if (this.running) throw new Error('FederationClient.run() is already running');
    this.running = true;
    try {
      return await this.serve();
    } finally {
      // The run is over (finished, stopped or failed for good): no task outlives it, and its channel goes with it.
      this.queue.abortWhere(() => true, new Error('the run is over'));
      await this.queue.idle();
      this.closeChannel();
    }
  }

  private closeChannel(): void {
    this.channelClosed = true;
    this.stream?.cancel();
    this.rpc.close();
  }

  private async serve(): Promise<RunSummary> {
    await checkResolvable(this.address); // a host that does not exist fails now, not after endless retries
    while (!this.stopped) {
      try {
        // A session outlives its task stream: a stream that dropped is reopened under the same session, so the
        // coordinator counts the site back (its "away since" clock ends) while a task runs on. Only a coordinator
        // that no longer knows the session (restarted, or the site's key revoked) is joined again.
        if (!this.token) await this.join();
        const finished = await this.serveTasks();
        if (finished) {
          const summary: RunSummary = { clientId: this.clientId, tasksCompleted: this.tasksCompleted, ...finished };
          this.log('info', 'run finished', { ...summary });
          this.emit('finished', summary);
          return summary;
        }
      } catch (e) {
        const code = (e as grpc.ServiceError).code;
        if (FATAL.has(code) || e instanceof ProtocolError || (e as { fatal?: boolean }).fatal) throw e;
        if (this.stopped) break;
        if (code === status.UNAUTHENTICATED) this.sessionLost(e as Error);
        // The coordinator's retry hint wins (with jitter); otherwise exponential backoff with full jitter.
        const hint = retryAfterOf(e as grpc.ServiceError);
        const delay = hint !== undefined ? hintedDelay(hint) : backoffDelay(this.failures, this.reportPolicy.backoff);
        this.failures++;
        this.log('warn', 'connection lost; retrying', { error: (e as Error).message, delayMs: delay });
        this.emit('reconnecting', { attempt: this.failures, delayMs: delay, error: (e as Error).message });
        await sleep(delay, this.halt.signal);
      }
    }
    return { clientId: this.clientId, tasksCompleted: this.tasksCompleted, finalVersion: -1, reason: 'stopped' };
  }

  /**
   * The task stream was refused as UNAUTHENTICATED: the coordinator does not know this session (it restarted, or
   * the session was revoked). Its tasks cannot take an upload or a report any more (task ids are never reissued
   * across restarts): they stop, and the next attempt joins again from Hello.
   */
  private sessionLost(e: Error): void {
    this.token = '';
    this.queue.abortWhere(() => true, new Error(`session lost: ${e.message}`));
  }

  /** Leaves the federation and closes the channel; a running training is aborted. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.halt.abort();
    this.queue.abortWhere(() => true, new Error('client stopping'));
    if (this.token && !this.channelClosed) {
      await new Promise<void>((r) => this.rpc.Leave({ session_token: this.token, reason: 'client stopping' }, { deadline: Date.now() + 2000 }, () => r()));
    }
    this.closeChannel();
  }

  /** Hello (challenge and the coordinator's keys), then Join with the challenge signed by the site's key (join.ts). */
  private async join(): Promise<void> {
    const j = await joinCoordinator(this.rpc, this.opts, this.identity); // a refusal retrying cannot change is fatal
    this.failures = 0;
    this.coordinator = j.coordinator;
    this.token = j.token;
    this.clientId = j.clientId;
    this.runId = j.runId;
    this.log('info', 'joined', { clientId: j.clientId, runId: j.runId, keyId: this.identity.keyId, coordinatorKeyId: j.coordinator.keyId });
    this.emit('joined', { clientId: j.clientId, runId: j.runId });
  }

  /**
   * Reads one task stream, queueing its tasks (task-queue.ts: a re-sent one is not run twice); resolves when the
   * run finishes (once the queued tasks ended), rejects when the stream breaks, at once: the queue runs on.
   */
  private serveTasks(): Promise<{ finalVersion: number; reason: string } | null> {
    return new Promise((resolve, reject) => {
      const stream = this.rpc.StreamTasks({ session_token: this.token });
      this.stream = stream;
      let done = false;
      const lost = (e: Error): void => {
        if (done) return;
        done = true;
        reject(e); // the queue runs on, SecAgg tasks too: the coordinator delivers their stage's message again
      };
      stream.on('data', (ev: TaskEvent__Output) => {
        if (done) return;
        this.failures = 0; // the stream is open: the next drop starts the backoff afresh
        if (this.inboxes.deliver(ev)) return;
        if (ev.cancel) return this.queue.cancel(ev.cancel.task_id, new Error(`cancelled by the coordinator: ${ev.cancel.reason}`));
        if (ev.finished) {
          done = true;
          const fin = ev.finished;
          void this.queue.idle().then(() => resolve({ finalVersion: fin.final_version, reason: fin.reason }));
          return;
        }
        const { evaluate, train } = ev;
        if (evaluate) this.queue.offer(queuedEvaluation(evaluate, (signal) => this.handleEvaluate(evaluate, signal)));
        if (train) this.queue.offer(queuedTrain(train, (signal) => this.handleTask(train, signal)));
      });
      stream.on('error', lost);
      stream.on('end', () => lost(Object.assign(new Error('task stream closed by the coordinator'), { code: status.UNAVAILABLE })));
    });
  }

  /** One task, start to finish; never throws (a failed task is reported and the client keeps serving). */
  private async handleTask(t: TrainTask__Output, signal: AbortSignal): Promise<void> {
    if (this.stopped || this.completed.has(t.task_id)) return;
    let failedIn: 'training' | undefined; // a training error is declined (decline.ts), so the round stops waiting
    try {
      signal.throwIfAborted();
      // Before training: a site that revealed unmask shares over this checkpoint would refuse at advertise anyway.
      if (t.secagg) this.ledger.mayJoin(this.runId, t.base_manifest_sha256);
      const floor = taskNoiseFloorRefusal(t.secagg, this.opts.minNoiseMultiplier);
      if (floor) throw new Error(floor);
      this.emit('task', { taskId: t.task_id, round: t.round, attempt: t.attempt, baseVersion: t.base_version });
      const global = sortByName(await this.download(t.base_version));
      const settings = taskSettings(t);
      const { loraAggregation } = settings;
      const scaffold = t.config!.scaffold ? await this.scaffoldRound(t, global, loraAggregation) : null;
      const plan = trainingPlan(t, settings, scaffold);
      const training = trainingSignal(signal, plan.deadlineUnixMs);
      let out;
      try {
        failedIn = 'training';
        out = await this.opts.trainer.train(
          global,
          plan,
          training.signal,
          this.opts.onTrainStep && ((s) => this.opts.onTrainStep!({ ...s, round: plan.round })),
        );
      } finally {
        training.done();
      }
      failedIn = undefined;
      signal.throwIfAborted();
      // Under 'ffa' only the lora_B deltas travel (lora_A checked unchanged, bit for bit).
      const delta = updateToSend(sortByName(out.adapter), global, loraAggregation);
      let metrics: Record<string, number>;
      if (t.secagg) {
        // Metrics first (they are not part of the sum), then the four stages; the weight stays hidden.
        metrics = { ...out.metrics, ...(this.opts.trainer.evaluate ? await this.opts.trainer.evaluate(out.adapter) : {}) };
        await this.report(t, 0, metrics, out.loraRank ?? 0, signal);
        await this.secagg(t, delta, out.numExamples, signal);
        this.completed.add(t.task_id);
      } else {
        // SCAFFOLD: Δc_i after the deltas in the same sealed upload; c_i⁺ is kept once the upload is accepted.
        const control = scaffold?.finish(out);
        await this.sendSealed((c) => sealDeltaPipelined(c, t, control ? sortByName([...delta, ...control.controlDeltas]) : delta, out.numExamples));
        if (control) await this.controlVariates.save(this.runId, control.next);
        this.completed.add(t.task_id);
        const evalMetrics = this.opts.trainer.evaluate ? await this.opts.trainer.evaluate(out.adapter) : {};
        metrics = { ...out.metrics, ...evalMetrics };
        signal.throwIfAborted(); // superseded, or the session lost, meanwhile: the report would be refused
        await this.report(t, out.numExamples, metrics, out.loraRank ?? 0, signal);
      }
      this.tasksCompleted++;
      const done: TaskDone = { taskId: t.task_id, round: t.round, numExamples: out.numExamples, metrics };
      this.log('info', 'task done', { ...done });
      this.emit('taskDone', done);
    } catch (e) {
      const error = e instanceof Error ? e.message : String(e);
      const [cancelled, req] = [signal.aborted, failedIn && !signal.aborted ? declineRequest(this.token, t, e) : undefined];
      this.log('warn', 'task failed', { taskId: t.task_id, round: t.round, error });
      // Declined before the event: a listener may stop the client (own-data.ts does on a settings mismatch).
      if (req)
        await declined(
          req,
          this.sendReport(t.task_id, signal, (c, cb) => this.rpc.DeclineTask(req, { deadline: c }, cb)),
          this.log.bind(this),
        );
      this.emit('taskFailed', { taskId: t.task_id, round: t.round, cancelled, error });
    } finally {
      this.inboxes.close(t.task_id);
    }
  }

  /** A SCAFFOLD task: the server's c for the base version, this site's c_i for the run (scaffold-site.ts). */
  private async scaffoldRound(t: TrainTask__Output, global: NamedTensor[], mode: Parameters<typeof trainableTensors>[1]): Promise<ScaffoldRound> {
    if (t.secagg) throw new Error('the coordinator asks for SCAFFOLD under secure aggregation, which cannot carry its control variates');
    const c = await downloadAdapter(this.rpc, this.token, t.base_version, undefined, true, this.parallel);
    const ci = await this.controlVariates.load(this.runId);
    return beginScaffoldRound(trainableTensors(global, mode), c, ci, (msg) => this.log('warn', msg, { round: t.round }));
  }

  /** One evaluation task; never throws (a failure is logged; the coordinator's deadline covers it). */
  private async handleEvaluate(t: EvaluateTask__Output, signal: AbortSignal): Promise<void> {
    if (this.stopped || this.completed.has(t.task_id)) return;
    try {
      signal.throwIfAborted();
      const done = await runEvaluateTask(
        {
          token: this.token,
          trainer: this.opts.trainer,
          download: (taskId, sha256) => this.download(t.version, { evaluationTaskId: taskId, sha256 }),
          send: (req) => this.sendReport(t.task_id, signal, (deadline, done) => this.rpc.ReportEvaluation(req, { deadline }, done)),
        },
        t,
      );
      this.completed.add(t.task_id);
      this.log('info', 'evaluation reported', { ...done });
      this.emit('evaluated', done);
    } catch (e) {
      this.log('warn', 'evaluation failed', { taskId: t.task_id, version: t.version, error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** Secure aggregation for one task: the update is masked before it leaves (secagg-task.ts, secagg-flow.ts). */
  private secagg(t: TrainTask__Output, delta: NamedTensor[], numExamples: number, signal: AbortSignal): Promise<void> {
    this.advertised.add(t.task_id);
    // A coordinator that contradicts itself in this round (a second, different stage message) stops the task.
    const inbox = this.inboxes.openFor(t.task_id, (e) => this.queue.cancel(t.task_id, e));
    return secaggTask({
      rpc: this.rpc,
      token: this.token,
      task: t,
      delta,
      numExamples,
      signal,
      clientId: this.clientId,
      runId: this.runId,
      identitySecretKey: this.identity.secretKey,
      trust: secaggTrust(this.opts, this.runId),
      ledger: this.ledger,
      inbox,
      observeSecAggInput: this.opts.observeSecAggInput,
      beforeSecAggStage: this.opts.beforeSecAggStage,
      uploadMasked: (y) => this.sendSealed((c) => sealMaskedPipelined(c, t, y)),
      backoff: this.reportPolicy.backoff,
      stopped: () => this.stopped,
      resent: (method, attempt, delayMs, e) => this.log('warn', SECAGG_RESENT, { taskId: t.task_id, method, attempt, delayMs, error: e.message }),
    });
  }

  /** What a sealed upload is bound to (sealed-sender.ts). */
  private sealContext(): SealContext {
    if (!this.coordinator) throw new Error('not joined');
    return {
      token: this.token,
      runId: this.runId,
      clientId: this.clientId,
      coordinator: this.coordinator,
      identitySecretKey: this.identity.secretKey,
      chunkBytes: this.opts.chunkBytes ?? DEFAULT_CHUNK_BYTES,
    };
  }

  /**
   * Downloads a global version as a chunked tensor stream; with `candidate`, the uncommitted adapter an evaluation
   * task names, whose data bytes must hash to its sha256 (download.ts).
   */
  download(version: number, candidate?: { evaluationTaskId: string; sha256: string }): Promise<NamedTensor[]> {
    return downloadAdapter(this.rpc, this.token, version, candidate, false, this.parallel);
  }

  /**
   * Seals an update for the coordinator (sealed-sender.ts: the delta, or under SecAgg the masked vector as one UINT32
   * tensor) and sends it, re-sending the same sealed bytes when the connection breaks.
   */
  private async sendSealed(seal: (c: SealContext) => Promise<SealedFrames>): Promise<void> {
    return sendSealedRetrying(this.rpc, await seal(this.sealContext()), this.reportPolicy.backoff, () => this.stopped);
  }

  private report(t: TrainTask__Output, numExamples: number, metrics: Record<string, number>, loraRank: number, signal: AbortSignal): Promise<void> {
    const [session_token, task_id, backend] = [this.token, t.task_id, this.opts.trainer.backend];
    const req = { session_token, task_id, round: t.round, num_examples: numExamples, backend, metrics, lora_rank: loraRank };
    checkReport(req); // e.g. a trainer's metric name the coordinator would refuse: said here, with the name
    return this.sendReport(t.task_id, signal, (deadline, done) => this.rpc.ReportMetrics(req, { deadline }, done));
  }

  /** A report, sent again while its call breaks in transit or outlasts its deadline and its task is current (report-retry.ts). */
  private sendReport(taskId: string, signal: AbortSignal, call: ReportCall): Promise<void> {
    const note: RetryNote = (attempt, delayMs, e) => this.log('warn', REPORT_RESENT, { taskId, attempt, delayMs, error: e.message });
    return sendReport(call, this.reportPolicy, signal, () => this.stopped, note);
  }
}
