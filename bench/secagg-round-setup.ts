// What both arms of the SecAgg round bench share for one N (bench/secagg-round.ts): the coordinator defaults that
// shape the round, every site's identity, token, data and seed, the coordinator's box key, a sealed upload made as
// the SDK makes it, each party's figures and the clocks they are timed with.
import { randomBytes } from 'node:crypto';
import nacl from 'tweetnacl';
import { clientIdFor } from '../coordinator/registry';
import { PROTOCOL_VERSION } from '../proto/load';
import { sealUpload, type SealedUpload, type UploadBinding } from '../proto/crypto/sealed-upload';
import type { NamedTensor } from '../proto/tensors';
import type { UploadFrame } from '../proto/generated/fedtune/v1/UploadFrame';
import type { TensorHeader } from '../proto/generated/fedtune/v1/TensorHeader';

export const now = (): number => Number(process.hrtime.bigint()) / 1e6;
/**
 * CPU ms this process has used (all its threads). On a box shared with other work, wall time stretches with the
 * load while CPU time barely moves, so the bench reports both; each step here is synchronous CPU work.
 */
export const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e3;
};

/** Coordinator defaults that shape the round (coordinator/config.ts). */
export interface RoundDefaults {
  readonly clipNorm: number;
  readonly weightCap: number;
  readonly maxClients: number;
  readonly fullGraphMax: number;
  readonly maxUploadBytes: number;
}

/** Everything both arms share for one N: identities, keys, data. */
export interface RoundSetup {
  readonly n: number;
  readonly runId: string;
  readonly ids: readonly string[];
  readonly identities: readonly nacl.SignKeyPair[];
  readonly tokens: readonly string[];
  readonly numExamples: readonly number[];
  readonly seeds: readonly number[];
  readonly box: nacl.BoxKeyPair;
  readonly global: NamedTensor[];
  readonly delta: (i: number) => NamedTensor[];
  readonly defaults: RoundDefaults;
}

export interface Party {
  ms: number;
  /** The same steps' CPU time (cpuNow). */
  cpuMs: number;
  sent: number;
  received: number;
  /** Of the above, what the consistency round adds (signing/verifying the lists, its messages). */
  consistencyMs?: number;
  consistencyBytes?: number;
  /** Of cpuMs, by step (SecAgg clients: encode, digest, advertise, shareKeys, receiveShares, mask, seal, consistency, unmask). */
  stages?: Record<string, number>;
}

export interface ArmResult {
  /** Clients that completed the round (survivors), in id order. */
  readonly clients: Party[];
  /** coordinator.sent counts only what this arm adds; `common` what the coordinator sends in both arms. */
  readonly coordinator: Party;
  readonly common: number;
  readonly adapter: NamedTensor[];
  readonly graph: string;
  readonly threshold: number;
  readonly dropped: number;
  /** Consistency signatures each site verifies (the quorum; it stops there) (SecAgg arm). */
  readonly signaturesChecked?: number;
}

export const taskId = (s: RoundSetup, i: number): string => `r1-a0-${s.ids[i]}`;
export const binding = (s: RoundSetup, i: number, base: string, numExamples: number): UploadBinding => ({
  protocolVersion: PROTOCOL_VERSION,
  runId: s.runId,
  clientId: s.ids[i],
  taskId: taskId(s, i),
  round: 1,
  attempt: 0,
  baseVersion: 0,
  baseManifestSha256: base,
  numExamples,
});

export function sealFor(
  s: RoundSetup,
  i: number,
  base: string,
  numExamples: number,
  tensors: TensorHeader,
  chunks: Iterable<Uint8Array>,
): { header: UploadFrame; sealed: SealedUpload } {
  const sealed = sealUpload({
    binding: binding(s, i, base, numExamples),
    tensors,
    plaintextChunks: chunks,
    coordinator: { keyId: 'bench', boxPublicKey: s.box.publicKey },
    identitySecretKey: s.identities[i].secretKey,
  });
  return {
    sealed,
    header: {
      header: {
        protocol_version: PROTOCOL_VERSION,
        session_token: s.tokens[i],
        task_id: taskId(s, i),
        round: 1,
        base_version: 0,
        num_examples: numExamples,
        tensors,
        sealed: sealed.envelope,
      },
    },
  };
}

export const boxSecret = (s: RoundSetup): { keyId: string; boxPublicKey: Uint8Array; boxSecretKey: Uint8Array } => ({
  keyId: 'bench',
  boxPublicKey: s.box.publicKey,
  boxSecretKey: s.box.secretKey,
});

/** Identities, keys and data for N clients; deltas come from `delta(i)` (shared across N and arms). */
export function roundSetup(n: number, global: NamedTensor[], delta: (i: number) => NamedTensor[], defaults: RoundDefaults): RoundSetup {
  const ids = Array.from({ length: n }, (_, i) => clientIdFor(`site-${String(i).padStart(3, '0')}`));
  return {
    n,
    runId: 'bench-run',
    ids,
    global,
    delta,
    defaults,
    identities: ids.map(() => nacl.sign.keyPair()),
    tokens: ids.map(() => randomBytes(32).toString('hex')),
    numExamples: ids.map((_, i) => 100 + ((i * 37) % 400)),
    seeds: ids.map((_, i) => 1000 + i),
    box: nacl.box.keyPair(),
  };
}
