// One task under secure aggregation, over gRPC: the stage messages of secagg-flow.ts go out as the four SecAgg
// unary calls, each checked against the wire's bounds (proto/limits.ts) before it is sent. The loop
// (client.ts) hands in the session, the task, the trained delta and the site's SecAgg state.
// The task outlives a task stream that drops (the coordinator waits for the site within rounds.reconnectGraceMs
// and delivers the stage's message again on the new stream), so a stage call whose connection broke is sent
// again, the same message, by report-retry.ts's rule (transport failures, while the task is current). The
// coordinator keeps one message per site and stage and refuses a second (ALREADY_EXISTS): after a broken call that
// refusal says the first one landed. A stage that moved on meanwhile (FAILED_PRECONDITION) may have counted it too:
// the flow waits for the next stage's message, which comes only if it did (else the task is cancelled with the round).
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { FederationClient as GrpcFederationClient } from '../proto/generated/fedtune/v1/Federation';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import type { IdentityTrust, SecAggLedger } from '../proto/secagg';
import { adToWire, settingsFromWire, shareKeysToWire, signatureToWire, unmaskResponseToWire } from '../proto/secagg/wire';
import { checkAdvertise, checkConsistency, checkShareKeys, checkUnmask } from '../proto/limits';
import type { NamedTensor } from '../proto/tensors';
import { runSecAgg } from './secagg-flow';
import type { SecAggInbox } from './secagg-inbox';
import type { FederationClientOptions } from './client-options';
import { sendReport, type ReportCall, type ReportPolicy, type RetryNote } from './report-retry';
import type { BackoffOptions } from './backoff';

/** What the client logs (warn) before a stage call is sent again. */
export const SECAGG_RESENT = 'secagg stage call lost in transit; sending it again';

type StageMethod = 'SecAggAdvertise' | 'SecAggShareKeys' | 'SecAggConsistency' | 'SecAggUnmask';

export interface SecAggTask {
  readonly rpc: GrpcFederationClient;
  readonly token: string;
  readonly task: TrainTask__Output;
  readonly delta: NamedTensor[];
  readonly numExamples: number;
  readonly signal: AbortSignal;
  readonly clientId: string;
  readonly runId: string;
  readonly identitySecretKey: Uint8Array;
  readonly trust: IdentityTrust;
  readonly ledger: SecAggLedger;
  /** The stage messages the coordinator pushed on the task stream for this task. */
  readonly inbox: SecAggInbox;
  readonly observeSecAggInput?: FederationClientOptions['observeSecAggInput'];
  readonly beforeSecAggStage?: FederationClientOptions['beforeSecAggStage'];
  /** Sends the masked vector like any update: sealed and signed, the same bytes again if the call breaks (sealed-sender.ts). */
  readonly uploadMasked: (y: Uint32Array) => Promise<void>;
  /** The wait before a stage call is sent again. */
  readonly backoff: BackoffOptions;
  /** The client is stopping: nothing is sent again. */
  readonly stopped: () => boolean;
  /** Told of each stage call sent again. */
  readonly resent?: (method: StageMethod, ...retry: Parameters<RetryNote>) => void;
}

/**
 * One stage call's deadline. A call that outlives it is sent again like one whose connection broke (report-retry.ts):
 * safe, since a repeat of a call that had landed hears ALREADY_EXISTS, taken below as delivered (landedBefore).
 */
const STAGE_CALL_DEADLINE_MS = 30_000;

/** What a repeat of a stage call that broke in transit may hear when the first one had landed. */
function landedBefore(e: grpc.ServiceError): boolean {
  return e.code === status.ALREADY_EXISTS || (e.code === status.FAILED_PRECONDITION && /is not accepted at stage/.test(e.details ?? ''));
}

/**
 * One stage call, sent again while it breaks in transit (sendReport's rule); resolves once the coordinator took it,
 * or once a repeat after a break hears that the first had landed (landedBefore); rejects with any other refusal.
 */
export async function sendStageCall(call: ReportCall, policy: ReportPolicy, signal: AbortSignal, stopped: () => boolean, onRetry?: RetryNote): Promise<void> {
  let broke = false;
  const note: RetryNote = (...retry) => {
    broke = true;
    onRetry?.(...retry);
  };
  try {
    await sendReport(call, policy, signal, stopped, note);
  } catch (e) {
    if (!broke || !landedBefore(e as grpc.ServiceError)) throw e;
  }
}

export function secaggTask(s: SecAggTask): Promise<void> {
  const t = s.task;
  const unary = <Req>(method: StageMethod, req: Req): Promise<void> => {
    type Unary = (r: Req, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void;
    const call: ReportCall = (deadline, done) => (s.rpc[method] as unknown as Unary).call(s.rpc, req, { deadline }, done);
    const note: RetryNote = (...retry) => s.resent?.(method, ...retry);
    return sendStageCall(call, { backoff: s.backoff, deadlineMs: STAGE_CALL_DEADLINE_MS }, s.signal, s.stopped, note);
  };
  const base = { session_token: s.token, task_id: t.task_id, round: t.round };
  const checked = <Req>(check: (r: Req) => void, req: Req): Req => (check(req), req);
  const observe = s.observeSecAggInput;
  const before = s.beforeSecAggStage;
  return runSecAgg({
    config: settingsFromWire(t.secagg!, t.base_manifest_sha256),
    clientId: s.clientId,
    identitySecretKey: s.identitySecretKey,
    delta: s.delta,
    numExamples: s.numExamples,
    runId: s.runId,
    trust: s.trust,
    ledger: s.ledger,
    observeEncoded: observe ? (x) => observe({ taskId: t.task_id, round: t.round, attempt: t.attempt }, x) : undefined,
    inbox: s.inbox,
    signal: s.signal,
    beforeStage: before ? (stage) => before(stage, { taskId: t.task_id, round: t.round }) : undefined,
    transport: {
      advertise: (ad) => unary('SecAggAdvertise', checked(checkAdvertise, { ...base, advertisement: adToWire(ad) })),
      shareKeys: (m) => unary('SecAggShareKeys', checked(checkShareKeys, { ...base, share_keys: shareKeysToWire(m) })),
      consistency: (sig) => unary('SecAggConsistency', checked(checkConsistency, { ...base, signature: signatureToWire(sig) })),
      // The coordinator finishes as soon as t answers suffice; a later answer finds the round closed, which is fine.
      unmask: (r) =>
        unary('SecAggUnmask', checked(checkUnmask, { ...base, response: unmaskResponseToWire(r) })).catch((e: grpc.ServiceError) => {
          if (e.code !== status.FAILED_PRECONDITION || !/closed/.test(e.details ?? '')) throw e;
        }),
      uploadMasked: s.uploadMasked,
    },
  });
}
