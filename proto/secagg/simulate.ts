// An in-process SecAgg round: every client and the server in one process, messages passed as objects. It is
// the reference for wiring the stages into a transport, and what the tests and the benchmark drive. It
// measures compute time per party and the bytes each message would take on the wire.
import { cmpId } from './bytes';
import type { SecAggRoundConfig } from './config';
import { SecAggClient } from './client';
import { wireBytes, type ShareKeysMessage } from './messages';
import { SecAggServer } from './server';
import type { RandomSource } from './keys';
import type { IdentityTrust } from './identity';

export interface SimClient {
  readonly id: string;
  readonly identitySecretKey: Uint8Array;
  readonly identityPublicKey: Uint8Array;
  /** Encoded update (encodeUpdate); may be produced lazily to keep memory low. */
  readonly input: () => Uint32Array;
}

/** Clients that go silent before a stage: they send nothing from that stage on. */
export interface SimDrops {
  /** Never advertise (not in U1). */
  readonly beforeAdvertise?: readonly string[];
  /** Advertise, then send no shares (in U1, not in U2). */
  readonly beforeShares?: readonly string[];
  /** Send shares, then no masked input (in U2, not in U3: their mask keys are rebuilt). */
  readonly beforeInput?: readonly string[];
  /** Send masked input, then no consistency signature (in U3, not signers: their seeds are rebuilt from others' shares). */
  readonly beforeConsistency?: readonly string[];
  /** Sign the lists, then no unmask response (in U3). */
  readonly beforeUnmask?: readonly string[];
}

export interface PartyStats {
  computeMs: number;
  bytesSent: number;
  bytesReceived: number;
}

export interface SimResult {
  readonly sum: Uint32Array;
  readonly survivors: readonly string[];
  /** Per client id. */
  readonly clients: ReadonlyMap<string, PartyStats>;
  readonly server: PartyStats;
}

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Who the simulated sites trust for identity keys (default: the roster, i.e. the coordinator's word). */
export interface SimTrust {
  readonly trust?: IdentityTrust;
  /** Operator certificates the server relays in the roster (identity.ts). */
  readonly certificates?: Readonly<Record<string, Uint8Array>>;
  readonly runId?: string;
}

export async function simulateRound(
  config: SecAggRoundConfig,
  clients: readonly SimClient[],
  drops: SimDrops = {},
  random?: (id: string) => RandomSource,
  trust: SimTrust = {},
): Promise<SimResult> {
  const gone = new Set<string>();
  const server: PartyStats = { computeMs: 0, bytesSent: 0, bytesReceived: 0 };
  const stats = new Map<string, PartyStats>(clients.map((c) => [c.id, { computeMs: 0, bytesSent: 0, bytesReceived: 0 }]));
  const timed = <T>(p: PartyStats, f: () => T): T => {
    const t = now();
    try {
      return f();
    } finally {
      p.computeMs += now() - t;
    }
  };
  const timedAsync = async <T>(p: PartyStats, f: () => Promise<T>): Promise<T> => {
    const t = now();
    try {
      return await f();
    } finally {
      p.computeMs += now() - t;
    }
  };
  const identityKeys = Object.fromEntries(clients.map((c) => [c.id, c.identityPublicKey]));
  const srv = timed(server, () => new SecAggServer(config, identityKeys, trust.certificates));
  const sc = new Map(
    clients.map((c) => [
      c.id,
      new SecAggClient({ config, clientId: c.id, identitySecretKey: c.identitySecretKey, random: random?.(c.id), trust: trust.trust, runId: trust.runId }),
    ]),
  );
  const live = (stage: readonly string[] | undefined): SimClient[] => {
    for (const id of stage ?? []) gone.add(id);
    return clients.filter((c) => !gone.has(c.id)).sort((a, b) => cmpId(a.id, b.id));
  };
  const send = (id: string, bytes: number): void => {
    stats.get(id)!.bytesSent += bytes;
    server.bytesReceived += bytes;
  };
  const recv = (id: string, bytes: number): void => {
    stats.get(id)!.bytesReceived += bytes;
    server.bytesSent += bytes;
  };

  for (const c of live(drops.beforeAdvertise)) {
    const ad = timed(stats.get(c.id)!, () => sc.get(c.id)!.advertise());
    send(c.id, wireBytes.advertisement(ad));
    timed(server, () => srv.addAdvertisement(ad));
  }
  const roster = timed(server, () => srv.closeAdvertise());
  const msgs: ShareKeysMessage[] = [];
  for (const c of live(drops.beforeShares)) {
    if (!roster.advertisements.some((a) => a.clientId === c.id)) continue;
    recv(c.id, wireBytes.roster(roster));
    const m = await timedAsync(stats.get(c.id)!, () => sc.get(c.id)!.shareKeys(roster));
    send(c.id, wireBytes.shareKeys(m));
    msgs.push(m);
  }
  for (const m of msgs) timed(server, () => srv.addShareKeys(m));
  const { u2, routed } = timed(server, () => srv.closeShareKeys());
  const inU2 = new Set(u2);
  for (const c of live(drops.beforeInput)) {
    if (!inU2.has(c.id)) continue;
    const r = timed(server, () => routed(c.id));
    recv(c.id, wireBytes.routedShares(r));
    const s = stats.get(c.id)!;
    timed(s, () => sc.get(c.id)!.receiveShares(r));
    const x = c.input();
    const y = timed(s, () => sc.get(c.id)!.maskedInput(x));
    send(c.id, wireBytes.vector(c.id, y.length));
    timed(server, () => srv.addMaskedInput(c.id, y));
  }
  const check = timed(server, () => srv.closeMaskedInput());
  for (const c of live(drops.beforeConsistency)) {
    if (!check.survivors.includes(c.id)) continue;
    recv(c.id, wireBytes.consistencyCheck(check));
    const sig = timed(stats.get(c.id)!, () => sc.get(c.id)!.consistency(check));
    send(c.id, wireBytes.consistencySignature(sig));
    timed(server, () => srv.addConsistency(sig));
  }
  const req = timed(server, () => srv.closeConsistency());
  const signers = new Set(req.signatures.map((x) => x.from));
  for (const c of live(drops.beforeUnmask)) {
    if (!signers.has(c.id)) continue;
    recv(c.id, wireBytes.unmaskRequest(req));
    const resp = timed(stats.get(c.id)!, () => sc.get(c.id)!.unmask(req));
    send(c.id, wireBytes.unmaskResponse(resp));
    timed(server, () => srv.addUnmaskResponse(resp));
  }
  const sum = await timedAsync(server, () => srv.finish());
  return { sum, survivors: req.survivors, clients: stats, server };
}
