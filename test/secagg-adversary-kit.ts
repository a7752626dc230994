// What the in-memory active-coordinator tests share (test/secagg-adversary.test.ts, secagg-operator-roster.test.ts):
// a world of n honest sites with their SecAggClients and a SecAggServer driven by hand, the honest stages up to the
// masked input, a survivor view to show a site, and the check that a site refuses (and returns nothing).
import nacl from 'tweetnacl';
import type { NamedTensor } from '../proto/tensors';
import {
  SecAggClient,
  type SecAggLedger,
  SecAggServer,
  chooseGraph,
  encodeUpdate,
  updateDigest,
  vectorLayout,
  type ConsistencyCheck,
  type IdentityTrust,
  type Roster,
  type SecAggRoundConfig,
} from '../proto/secagg';
import { lcg, seedOf } from './secagg-core-kit';

export const idOf = (i: number): string => `s${String(i).padStart(3, '0')}`;
export const RUN = 'run-adv';
// A refusal is expected as secagg-hand.ts's refused() checks it (status and message pattern).
export { refused } from './secagg-hand';

export interface World {
  ids: string[];
  cfg: SecAggRoundConfig;
  identities: nacl.SignKeyPair[];
  deltas: NamedTensor[][];
  global: NamedTensor[];
  clients: SecAggClient[];
  srv: SecAggServer;
  encoded: Uint32Array[];
}

export function world(
  n: number,
  o: { roundTag?: string; ledgers?: SecAggLedger[]; trust?: (i: number) => IdentityTrust; certificates?: Record<string, Uint8Array> } = {},
): World {
  const ids = Array.from({ length: n }, (_, i) => idOf(i));
  const global: NamedTensor[] = [{ name: 'l.lora_B', dtype: 'float32', shape: [3, 4], data: Float32Array.from({ length: 12 }, lcg(3)) }];
  const chosen = chooseGraph(n);
  const cfg: SecAggRoundConfig = {
    roundTag: o.roundTag ?? `${RUN}/r1/a1`,
    baseManifestSha256: 'ef'.repeat(32),
    selected: ids,
    threshold: chosen.threshold,
    graph: chosen.graph,
    clipNorm: 1,
    weightCap: 100,
    maxClients: 1024,
    include: ['l.lora_B'],
    vectorLength: vectorLayout(global, ['l.lora_B']).length,
  };
  const identities = ids.map((id) => nacl.sign.keyPair.fromSeed(seedOf(`adv-identity-${id}`)));
  const deltas = ids.map((_, i) => {
    const r = lcg(50 + i);
    return [{ ...global[0], data: Float32Array.from({ length: 12 }, () => 0.2 * r()) }];
  });
  const clients = ids.map(
    (id, i) =>
      new SecAggClient({ config: cfg, clientId: id, identitySecretKey: identities[i].secretKey, runId: RUN, ledger: o.ledgers?.[i], trust: o.trust?.(i) }),
  );
  const srv = new SecAggServer(cfg, Object.fromEntries(ids.map((id, i) => [id, identities[i].publicKey])), o.certificates);
  const encoded = deltas.map((d, i) => encodeUpdate(d, 10 + i, cfg, seedOf(`adv-rounding-${i}-${cfg.roundTag}`)));
  return { ids, cfg, identities, deltas, global, clients, srv, encoded };
}

/** Honest stages 1–3 for everyone: returns the masked inputs (already summed by the server). */
export async function throughMaskedInput(w: World): Promise<Roster> {
  for (const c of w.clients) w.srv.addAdvertisement(c.advertise());
  const roster = w.srv.closeAdvertise();
  for (const c of w.clients) w.srv.addShareKeys(await c.shareKeys(roster));
  const { routed } = w.srv.closeShareKeys();
  w.clients.forEach((c, i) => {
    c.receiveShares(routed(c.clientId));
    w.srv.addMaskedInput(c.clientId, c.maskedInput(w.encoded[i], updateDigest(w.deltas[i], 10 + i, w.cfg.include)));
  });
  return roster;
}

export const view = (survivors: string[], all: string[]): ConsistencyCheck => ({
  survivors: [...survivors].sort(),
  dropped: all.filter((v) => !survivors.includes(v)),
});
