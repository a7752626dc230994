// One task under secure aggregation, over gRPC: the stage messages of secagg-flow.ts go out as the four SecAgg
// unary calls, each checked against the wire's bounds (proto/limits.ts) before it is sent. The loop
// (client.ts) hands in the session, the task, the trained delta and the site's SecAgg state.
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { FederationClient as GrpcFederationClient } from '../proto/generated/fedtune/v1/Federation';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import type { IdentityTrust, SecAggLedger } from '../proto/secagg';
import { adToWire, settingsFromWire, shareKeysToWire, signatureToWire, unmaskResponseToWire } from '../proto/secagg/wire';
import { checkAdvertise, checkConsistency, checkShareKeys, checkUnmask } from '../proto/limits';
import type { NamedTensor } from '../proto/tensors';
import { runSecAgg, type SecAggInbox } from './secagg-flow';
import type { FederationClientOptions } from './client-options';

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
  /** Sends the masked vector like any update: sealed and signed (sealed-sender.ts). */
  readonly uploadMasked: (y: Uint32Array) => Promise<void>;
}

export function secaggTask(s: SecAggTask): Promise<void> {
  const t = s.task;
  const unary = <Req>(method: 'SecAggAdvertise' | 'SecAggShareKeys' | 'SecAggConsistency' | 'SecAggUnmask', req: Req): Promise<void> =>
    new Promise((resolve, reject) =>
      (s.rpc[method] as unknown as (r: Req, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void).call(
        s.rpc,
        req,
        { deadline: Date.now() + 30_000 },
        (e) => (e ? reject(e) : resolve()),
      ),
    );
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
