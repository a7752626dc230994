// Joining a coordinator: Hello (a challenge and the coordinator's keys, checked against a pinned key id), then
// Join with the challenge signed by the site's Ed25519 key over the coordinator's keys (domain fedtune/join/v2,
// so a join cannot be relayed to another coordinator). The SDK's loop (client.ts) joins at the start and again when
// the coordinator no longer knows its session (a stream that merely dropped is reopened under the same session).
import { status, type ServiceError } from '@grpc/grpc-js';
import type { FederationClient as GrpcFederationClient } from '../proto/generated/fedtune/v1/Federation';
import type { HelloResponse__Output } from '../proto/generated/fedtune/v1/HelloResponse';
import type { JoinRequest } from '../proto/generated/fedtune/v1/JoinRequest';
import type { JoinResponse__Output } from '../proto/generated/fedtune/v1/JoinResponse';
import type { CoordinatorKeys__Output } from '../proto/generated/fedtune/v1/CoordinatorKeys';
import { PROTOCOL_VERSION } from '../proto/load';
import { ProtocolError } from '../proto/errors';
import { DOMAINS, joinSignedFields, sign } from '../proto/crypto/signing';
import { checkJoin, retryAfterOf } from '../proto/limits';
import type { ClientIdentity } from './identity';
import type { FederationClientOptions } from './client-options';

export interface JoinedCoordinatorKeys {
  readonly keyId: string;
  readonly boxPublicKey: Uint8Array;
  readonly signPublicKey: Uint8Array;
}

export interface Joined {
  readonly token: string;
  readonly clientId: string;
  readonly runId: string;
  readonly coordinator: JoinedCoordinatorKeys;
}

type JoinOptions = Pick<FederationClientOptions, 'name' | 'trainer' | 'labels' | 'joinToken' | 'coordinatorKeyId' | 'baseModelSha256'>;

function hello(rpc: GrpcFederationClient): Promise<HelloResponse__Output> {
  return new Promise((resolve, reject) =>
    rpc.Hello({ protocol_version: PROTOCOL_VERSION }, { deadline: Date.now() + 10_000 }, (err, res) =>
      err || !res ? reject(err ?? new Error('empty hello response')) : resolve(res),
    ),
  );
}

function joinCall(rpc: GrpcFederationClient, req: JoinRequest): Promise<JoinResponse__Output> {
  return new Promise((resolve, reject) =>
    rpc.Join(req, { deadline: Date.now() + 10_000 }, (err, res) => (err || !res ? reject(err ?? new Error('empty join response')) : resolve(res))),
  );
}

function checkCoordinatorKeys(k: CoordinatorKeys__Output | null, pinned: string | undefined): JoinedCoordinatorKeys {
  if (!k || k.box_public_key.length !== 32 || k.sign_public_key.length !== 32)
    throw new ProtocolError(status.FAILED_PRECONDITION, 'the coordinator did not present its public keys');
  if (pinned && k.key_id !== pinned) {
    throw new ProtocolError(status.PERMISSION_DENIED, `coordinator presents key ${k.key_id}; this site pins ${pinned}`);
  }
  return { keyId: k.key_id, boxPublicKey: new Uint8Array(k.box_public_key), signPublicKey: new Uint8Array(k.sign_public_key) };
}

/**
 * Hello, then a signed Join; throws the coordinator's refusal or a ProtocolError for a coordinator out of place. A
 * refusal that retrying cannot change is marked `fatal`: a refused identity (a stale challenge is ABORTED, and
 * retried from Hello), or a request too large for the coordinator (overloaded, with a retry hint, is worth waiting for).
 */
export async function joinCoordinator(rpc: GrpcFederationClient, opts: JoinOptions, identity: ClientIdentity): Promise<Joined> {
  try {
    return await helloAndJoin(rpc, opts, identity);
  } catch (e) {
    const code = (e as ServiceError).code;
    const final =
      code === status.UNAUTHENTICATED ||
      code === status.PERMISSION_DENIED ||
      (code === status.RESOURCE_EXHAUSTED && retryAfterOf(e as ServiceError) === undefined);
    throw final ? Object.assign(e as Error, { fatal: true }) : e;
  }
}

async function helloAndJoin(rpc: GrpcFederationClient, opts: JoinOptions, identity: ClientIdentity): Promise<Joined> {
  const h = await hello(rpc);
  const coordinator = checkCoordinatorKeys(h.coordinator, opts.coordinatorKeyId);
  const backend = opts.trainer.backend;
  const signature = sign(
    DOMAINS.join,
    joinSignedFields(PROTOCOL_VERSION, h.run_id, h.challenge, opts.name, identity.publicKey, backend, h.coordinator!),
    identity.secretKey,
  );
  const req: JoinRequest = {
    protocol_version: PROTOCOL_VERSION,
    client_name: opts.name,
    backend,
    labels: opts.labels ?? {},
    public_key: identity.publicKey,
    challenge: h.challenge,
    signature,
    join_token: opts.joinToken ?? '',
    coordinator_key_id: coordinator.keyId,
  };
  checkJoin(req);
  const res = await joinCall(rpc, req);
  if (opts.baseModelSha256 && res.base_model_sha256 !== opts.baseModelSha256) {
    throw new ProtocolError(status.FAILED_PRECONDITION, `coordinator fine-tunes base model ${res.base_model_sha256}; this site has ${opts.baseModelSha256}`);
  }
  const keys = checkCoordinatorKeys(res.coordinator ?? h.coordinator, opts.coordinatorKeyId);
  if (keys.keyId !== coordinator.keyId) throw new ProtocolError(status.FAILED_PRECONDITION, 'the coordinator changed keys between Hello and Join');
  return { token: res.session_token, clientId: res.client_id, runId: res.run_id, coordinator: keys };
}
