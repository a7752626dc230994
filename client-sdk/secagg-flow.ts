// The client's side of a SecAgg round over gRPC: advertise → (roster) → share keys → (routed shares) →
// masked upload → (consistency check) → sign the lists → (unmask request + signatures) → reveal shares. The
// coordinator's stage messages arrive on the task stream at any time, and again on a reopened stream; the inbox
// (secagg-inbox.ts) holds them until the flow asks. The update is encoded (clipped, weighted, stochastically
// rounded) and masked here, so it never leaves the site in the clear, not even sealed.
import { randomBytes } from 'node:crypto';
import type { NamedTensor } from '../proto/tensors';
import { SecAggClient, encodeUpdate, jointNoiseMultiplier, updateDigest, type IdentityTrust, type SecAggLedger } from '../proto/secagg';
import type { SecAggSettings__Output } from '../proto/generated/fedtune/v1/SecAggSettings';
import type { Advertisement, ConsistencySignature, ShareKeysMessage, UnmaskResponse } from '../proto/secagg/messages';
import type { SecAggInbox } from './secagg-inbox';
import type { SecAggRoundConfig } from '../proto/secagg/config';

export type SecAggStage = 'advertise' | 'shareKeys' | 'maskedInput' | 'consistency' | 'unmask';

/** The largest noise floor a site may set: far beyond any useful multiplier (z 100 already drowns any update). */
export const MAX_NOISE_FLOOR = 1000;

/** Whose word a site takes for its peers' identity keys (proto/secagg/identity.ts): its operator's, its own list, or the coordinator's. */
export function secaggTrust(
  o: { readonly rosterKey?: Uint8Array; readonly secaggAllowList?: Readonly<Record<string, Uint8Array>> },
  runId: string,
): IdentityTrust {
  if (o.rosterKey) return { kind: 'operator', publicKey: o.rosterKey, runId };
  if (o.secaggAllowList) return { kind: 'allowList', keys: o.secaggAllowList };
  return { kind: 'coordinator' };
}

/**
 * `z` when it is a noise floor a site may set (FederationClientOptions.minNoiseMultiplier): a number in
 * (0, MAX_NOISE_FLOOR]. A RangeError otherwise, before anything is sent: NaN would refuse every task and a floor ≤ 0
 * none, without a word.
 */
export function checkNoiseFloor(z: number): number {
  if (!(z > 0 && z <= MAX_NOISE_FLOOR)) throw new RangeError(`minNoiseMultiplier must be a number in (0, ${MAX_NOISE_FLOOR}]; got ${z}`);
  return z;
}

/**
 * Why a site with a noise floor (FederationClientOptions.minNoiseMultiplier) refuses a task, or null: it requires
 * its update to be noised before it leaves, so only SecAgg tasks whose noise multiplier reaches the floor qualify.
 */
export function noiseFloorRefusal(taskNoiseMultiplier: number | undefined, floor: number | undefined): string | null {
  if (floor === undefined) return null;
  if (taskNoiseMultiplier === undefined)
    return `refused: this site adds DP noise itself (noise multiplier ≥ ${floor}) and the task is not under secure aggregation`;
  if (!(taskNoiseMultiplier >= floor)) return `refused: the task's noise multiplier ${taskNoiseMultiplier} is below this site's floor ${floor}`;
  return null;
}

/**
 * noiseFloorRefusal for a task's SecAgg settings (none: a plain task): the floor is held to the round's joint noise
 * multiplier, which under adaptive clipping's count (clip_count_noise) is below the update's own (jointNoiseMultiplier).
 */
export function taskNoiseFloorRefusal(
  s: Pick<SecAggSettings__Output, 'noise_multiplier' | 'clip_count_noise'> | null | undefined,
  floor: number | undefined,
): string | null {
  return noiseFloorRefusal(s ? jointNoiseMultiplier(s.noise_multiplier, s.clip_count_noise) : undefined, floor);
}

/** The transport the flow speaks through (FederationClient implements it over gRPC). */
export interface SecAggTransport {
  advertise(ad: Advertisement): Promise<void>;
  shareKeys(m: ShareKeysMessage): Promise<void>;
  uploadMasked(y: Uint32Array): Promise<void>;
  consistency(s: ConsistencySignature): Promise<void>;
  unmask(r: UnmaskResponse): Promise<void>;
}

export async function runSecAgg(o: {
  config: SecAggRoundConfig;
  clientId: string;
  identitySecretKey: Uint8Array;
  delta: NamedTensor[];
  numExamples: number;
  runId: string;
  trust?: IdentityTrust;
  ledger: SecAggLedger;
  inbox: SecAggInbox;
  transport: SecAggTransport;
  signal: AbortSignal;
  /** Fault injection for simulations and tests: runs before each stage; may throw to abandon the task. */
  beforeStage?: (stage: SecAggStage) => void | Promise<void>;
  /** Tests only: sees the encoded vector before it is masked (it never leaves the site). */
  observeEncoded?: (x: Uint32Array) => void;
}): Promise<void> {
  const { signal } = o;
  const sc = new SecAggClient({
    config: o.config,
    clientId: o.clientId,
    identitySecretKey: o.identitySecretKey,
    trust: o.trust,
    ledger: o.ledger,
    runId: o.runId,
  });
  // Fresh secret rounding randomness: nothing the coordinator chose or recorded can recompute it (issue 13 #5).
  const x = encodeUpdate(o.delta, o.numExamples, o.config, new Uint8Array(randomBytes(32)));
  o.observeEncoded?.(x);
  const digest = updateDigest(o.delta, o.numExamples, o.config.include);
  await o.beforeStage?.('advertise');
  await o.transport.advertise(sc.advertise());
  const roster = await o.inbox.next('roster', signal);
  await o.beforeStage?.('shareKeys');
  await o.transport.shareKeys(await sc.shareKeys(roster));
  const routed = await o.inbox.next('shares', signal);
  sc.receiveShares(routed);
  await o.beforeStage?.('maskedInput');
  await o.transport.uploadMasked(sc.maskedInput(x, digest, true)); // x is masked in place: it is not needed after
  const check = await o.inbox.next('consistency', signal);
  await o.beforeStage?.('consistency');
  await o.transport.consistency(sc.consistency(check));
  const req = await o.inbox.next('unmask', signal);
  await o.beforeStage?.('unmask');
  signal.throwIfAborted();
  await o.transport.unmask(sc.unmask(req));
}
