// One federated round at the protocol level, in one process, for the two arms that `npm run bench` compares.
// Each step calls the same library code that client-sdk/client.ts and coordinator/service.ts call, in the
// same order, and is timed on the party that runs it; protobuf (de)serialisation and gRPC transport are left
// out of the timings in both arms (they are the same bytes both ways), but every message is serialised with
// fedtune.proto afterwards to count its exact protobuf payload bytes (gRPC/HTTP-2 framing excluded).
//  plain:  client = tensorHeader + sealUpload (ChaCha20-Poly1305 chunks, Ed25519-signed header) of the
//          float32 delta. Coordinator, per upload: header checks, SealedUploadOpener (signature, every chunk),
//          TensorStreamDecoder (finite, in FedAvg's range), blob kept sealed; at aggregation: openAll (the
//          second decryption) + split + FedAvg.aggregate over all updates.
//  secagg: client = encodeUpdate + SecAggClient stages + sealUpload of the masked UINT32 vector (uploadMasked).
//          Coordinator = SecAggServer stages, per masked upload SealedUploadOpener + copy into one buffer
//          (MaskedVectorReceiver) + addMaskedInput, then finish (seeds, self/pair masks) + decodeSum.
// Shared set-up: bench/secagg-round-setup.ts; the bytes on the wire: bench/secagg-round-wire.ts.
import { randomBytes } from 'node:crypto';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { PROTOCOL_VERSION, DEFAULT_CHUNK_BYTES } from '../proto/load';
import { swapPublicKeyCache, type PublicKeyCache } from '../proto/crypto/ed25519';
import { SealedUploadOpener } from '../proto/crypto/sealed-upload';
import { TensorStreamDecoder, checkLayout, dataChunks, tensorHeader, validateHeader } from '../proto/tensor-stream';
import {
  SecAggClient,
  SecAggServer,
  chooseGraph,
  consistencyQuorum,
  decodeSum,
  encodeUpdate,
  addInt32,
  updateDigest,
  vectorLayout,
  type SecAggRoundConfig,
} from '../proto/secagg';
import {
  adToWire,
  consistencyCheckToWire,
  rosterToWire,
  routedToWire,
  settingsToWire,
  shareKeysToWire,
  signatureToWire,
  unmaskRequestToWire,
  unmaskResponseToWire,
} from '../proto/secagg/wire';
import { binding, boxSecret, cpuNow, now, sealFor, taskId, type ArmResult, type Party, type RoundSetup } from './secagg-round-setup';
import { commonBytes, delivered, plainTask, received, ser, taskEventBytes, uploadBytes } from './secagg-round-wire';

/** A plain round: every client in `live` seals its delta; the coordinator opens, checks, keeps, and aggregates. */
export function plainRound(s: RoundSetup, live: readonly number[]): ArmResult {
  const base = '0'.repeat(64);
  const coordinator: Party = { ms: 0, cpuMs: 0, sent: 0, received: 0 };
  const clients: Party[] = [];
  const strategy = new FedAvg();
  const agg = strategy.begin(s.global);
  for (const i of live) {
    const delta = s.delta(i);
    let t = now();
    let c0 = cpuNow();
    const { header, sealed } = sealFor(s, i, base, s.numExamples[i], tensorHeader(delta, DEFAULT_CHUNK_BYTES), dataChunks(delta, DEFAULT_CHUNK_BYTES));
    const c: Party = { ms: now() - t, cpuMs: cpuNow() - c0, sent: uploadBytes(header, sealed), received: 0 };
    clients.push(c);
    coordinator.received += c.sent;
    const h = received(header).header!;
    const chunks = delivered(sealed.chunks);
    t = now();
    c0 = cpuNow();
    checkLayout(validateHeader(h.tensors, s.defaults.maxUploadBytes), s.global);
    const op = new SealedUploadOpener(h.sealed!, binding(s, i, base, Number(h.num_examples)), h.tensors!, boxSecret(s), s.identities[i].publicKey, s.ids[i]);
    const dec = new TensorStreamDecoder(h.tensors, { maxBytes: s.defaults.maxUploadBytes, authenticated: true, requireFinite: false });
    for (const chunk of chunks) dec.push(op.open(chunk));
    op.finish();
    // Opened once; admitted (shape, finite, range) and folded into the running sum as it arrives.
    const update = { clientId: s.ids[i], numExamples: s.numExamples[i], delta: dec.finishAuthenticated() };
    agg.admit(update);
    agg.add(update);
    coordinator.ms += now() - t;
    coordinator.cpuMs += cpuNow() - c0;
  }
  const t = now();
  const c0 = cpuNow();
  const adapter = strategy.aggregate(s.global, agg.sum());
  coordinator.ms += now() - t;
  coordinator.cpuMs += cpuNow() - c0;
  return { clients, coordinator, common: commonBytes(s, live), adapter, graph: '-', threshold: 0, dropped: s.n - live.length };
}

/** The round config SecAggAttempt builds for these clients (coordinator/secagg-attempt.ts). */
export function secaggConfig(s: RoundSetup): SecAggRoundConfig {
  const { graph, threshold } = chooseGraph(s.n, s.defaults.fullGraphMax);
  const include = s.global.map((t) => t.name).sort();
  return {
    roundTag: `${s.runId}/r1/a0`,
    baseManifestSha256: 'ab'.repeat(32),
    selected: [...s.ids].sort(),
    threshold,
    graph,
    clipNorm: s.defaults.clipNorm,
    weightCap: s.defaults.weightCap,
    maxClients: s.defaults.maxClients,
    include,
    vectorLength: vectorLayout(s.global, include).length,
  };
}

/**
 * A SecAgg round: all N clients advertise and share keys; those in `dropAfterShares` then vanish (no masked
 * input, no unmask answer), so the coordinator rebuilds their mask keys and removes their pair masks.
 * Throws when the unmasked sum is not bit-identical to the sum of the survivors' encoded updates.
 */
export async function secaggRound(s: RoundSetup, dropAfterShares: ReadonlySet<number>): Promise<ArmResult> {
  const cfg = secaggConfig(s);
  const coordinator: Party = { ms: 0, cpuMs: 0, sent: 0, received: 0 };
  const party = s.ids.map((): Party => ({ ms: 0, cpuMs: 0, sent: 0, received: 0 }));
  const all = s.ids.map((_, i) => i);
  const toClient = (i: number, bytes: number): void => {
    party[i].received += bytes;
    coordinator.sent += bytes;
  };
  const fromClient = (i: number, bytes: number): void => {
    party[i].sent += bytes;
    coordinator.received += bytes;
  };
  const onCoordinator = <T>(f: () => T): T => {
    const t = now();
    const c0 = cpuNow();
    const r = f();
    coordinator.ms += now() - t;
    coordinator.cpuMs += cpuNow() - c0;
    return r;
  };
  // Each simulated site has its own cache of imported peer keys, as each real site (its own process) has: with one
  // cache for all, only the first site of a round would pay for importing its peers' keys.
  const keyCaches = s.ids.map((): PublicKeyCache => new Map());
  const onClient = async <T>(i: number, stage: string, f: () => T | Promise<T>): Promise<T> => {
    const outer = swapPublicKeyCache(keyCaches[i]);
    const t = now();
    const c0 = cpuNow();
    let r: T;
    try {
      r = await f();
    } finally {
      swapPublicKeyCache(outer);
    }
    const dc = cpuNow() - c0;
    party[i].ms += now() - t;
    party[i].cpuMs += dc;
    const st = (party[i].stages ??= {});
    st[stage] = (st[stage] ?? 0) + dc;
    return r;
  };
  const base = { round: 1 };
  const identityKeys = Object.fromEntries(s.ids.map((id, i) => [id, s.identities[i].publicKey]));
  const srv = onCoordinator(() => new SecAggServer(cfg, identityKeys));
  // The task carries the SecAgg settings (bytes a plain task does not have).
  const settings = settingsToWire(cfg);
  for (const i of all) toClient(i, taskEventBytes({ train: { ...plainTask(s, i), secagg: settings } }) - taskEventBytes({ train: plainTask(s, i) }));
  // Stage 1 (runSecAgg): encode, advertise.
  const sc: SecAggClient[] = [];
  const encoded: Uint32Array[] = [];
  const expected = new Int32Array(cfg.vectorLength);
  const digests: Uint8Array[] = [];
  for (const i of all) {
    const delta = s.delta(i);
    // As client-sdk/secagg-flow.ts: encode with fresh rounding randomness, digest the update for the ledger, advertise.
    encoded[i] = await onClient(i, 'encode', () => encodeUpdate(delta, s.numExamples[i], cfg, new Uint8Array(randomBytes(32))));
    if (!dropAfterShares.has(i)) addInt32(expected, new Int32Array(encoded[i].buffer)); // for the check at the end, untimed
    digests[i] = await onClient(i, 'digest', () => updateDigest(delta, s.numExamples[i], cfg.include));
    const ad = await onClient(i, 'advertise', () => {
      sc[i] = new SecAggClient({ config: cfg, clientId: s.ids[i], identitySecretKey: s.identities[i].secretKey });
      return sc[i].advertise();
    });
    fromClient(i, ser('SecAggAdvertise', 'request', { session_token: s.tokens[i], task_id: taskId(s, i), ...base, advertisement: adToWire(ad) }).length);
    onCoordinator(() => srv.addAdvertisement(ad));
  }
  const roster = onCoordinator(() => srv.closeAdvertise());
  for (const i of all) toClient(i, taskEventBytes({ secagg_roster: rosterToWire(taskId(s, i), roster) }));
  // Stage 2: share keys.
  for (const i of all) {
    const m = await onClient(i, 'shareKeys', () => sc[i].shareKeys(roster));
    fromClient(i, ser('SecAggShareKeys', 'request', { session_token: s.tokens[i], task_id: taskId(s, i), ...base, share_keys: shareKeysToWire(m) }).length);
    onCoordinator(() => srv.addShareKeys(m));
  }
  const { routed } = onCoordinator(() => srv.closeShareKeys());
  const live = all.filter((i) => !dropAfterShares.has(i));
  // Stage 3: routed shares, masked input, sealed like any upload.
  for (const i of live) {
    const r = onCoordinator(() => routed(s.ids[i]));
    toClient(i, taskEventBytes({ secagg_shares: routedToWire(taskId(s, i), r) }));
    await onClient(i, 'receiveShares', () => sc[i].receiveShares(r));
    // In place, as the SDK does (client-sdk/secagg-flow.ts).
    const y = await onClient(i, 'mask', () => sc[i].maskedInput(encoded[i], digests[i], true));
    encoded[i] = new Uint32Array(0); // masked and sent: free it
    const { header, sealed } = await onClient(i, 'seal', () => {
      const bytes = Buffer.from(y.buffer, y.byteOffset, y.byteLength);
      const chunks: Buffer[] = [];
      for (let off = 0; off < bytes.length; off += DEFAULT_CHUNK_BYTES) chunks.push(bytes.subarray(off, off + DEFAULT_CHUNK_BYTES));
      const tensors = {
        protocol_version: PROTOCOL_VERSION,
        tensors: [{ name: 'secagg.masked', dtype: 'UINT32' as const, shape: [y.length] }],
        total_bytes: bytes.length,
        chunk_bytes: DEFAULT_CHUNK_BYTES,
      };
      return sealFor(s, i, cfg.baseManifestSha256, 0, tensors, chunks);
    });
    fromClient(i, uploadBytes(header, sealed));
    const h = received(header).header!;
    const chunks = delivered(sealed.chunks);
    onCoordinator(() => {
      const op = new SealedUploadOpener(h.sealed!, binding(s, i, cfg.baseManifestSha256, 0), h.tensors!, boxSecret(s), s.identities[i].publicKey, s.ids[i]);
      const buf = Buffer.alloc(Number(h.tensors!.total_bytes)); // MaskedVectorReceiver
      let off = 0;
      for (const chunk of chunks) off += op.open(chunk).copy(buf, off);
      op.finish();
      srv.addMaskedInput(s.ids[i], new Uint32Array(buf.buffer, buf.byteOffset, buf.length / 4));
    });
  }
  // Stage 4a: the consistency round (each survivor signs the lists; the coordinator checks and relays).
  const cons0 = coordinator.ms;
  const check = onCoordinator(() => srv.closeMaskedInput());
  for (const i of live) {
    const before = { ms: party[i].ms, bytes: party[i].sent + party[i].received };
    toClient(i, taskEventBytes({ secagg_consistency: consistencyCheckToWire(taskId(s, i), check) }));
    const sig = await onClient(i, 'consistency', () => sc[i].consistency(check));
    fromClient(i, ser('SecAggConsistency', 'request', { session_token: s.tokens[i], task_id: taskId(s, i), ...base, signature: signatureToWire(sig) }).length);
    onCoordinator(() => srv.addConsistency(sig));
    party[i].consistencyMs = party[i].ms - before.ms;
    party[i].consistencyBytes = party[i].sent + party[i].received - before.bytes;
  }
  const req = onCoordinator(() => srv.closeConsistency());
  coordinator.consistencyMs = coordinator.ms - cons0;
  // Stage 4b: unmask (each site first checks the relayed signatures), then the sum and its decoding.
  for (const i of live) {
    const withoutSigs = taskEventBytes({ secagg_unmask: unmaskRequestToWire(taskId(s, i), { ...req, signatures: [] }) });
    const reqBytes = taskEventBytes({ secagg_unmask: unmaskRequestToWire(taskId(s, i), req) });
    toClient(i, reqBytes);
    const t0 = party[i].ms;
    const resp = await onClient(i, 'unmask', () => sc[i].unmask(req));
    // Checking the quorum of signatures is most of this step (the shares are only copied): counted whole as the
    // consistency round's cost, an upper bound.
    party[i].consistencyMs! += party[i].ms - t0;
    party[i].consistencyBytes! += reqBytes - withoutSigs;
    fromClient(i, ser('SecAggUnmask', 'request', { session_token: s.tokens[i], task_id: taskId(s, i), ...base, response: unmaskResponseToWire(resp) }).length);
    onCoordinator(() => srv.addUnmaskResponse(resp));
  }
  const t = now();
  const c0 = cpuNow();
  const sum = await srv.finish();
  const { adapter } = decodeSum(sum, cfg, s.global);
  coordinator.ms += now() - t;
  coordinator.cpuMs += cpuNow() - c0;
  if (!Buffer.from(sum.buffer).equals(Buffer.from(expected.buffer)))
    throw new Error(`secagg sum differs from the sum of the encoded updates (N = ${s.n}, ${dropAfterShares.size} dropped)`);
  return {
    clients: live.map((i) => party[i]),
    coordinator,
    common: commonBytes(s, live),
    adapter,
    graph: cfg.graph.kind === 'full' ? 'full' : `harary k=${cfg.graph.k}`,
    threshold: cfg.threshold,
    dropped: dropAfterShares.size,
    signaturesChecked: Math.min(req.signatures.length, consistencyQuorum(cfg.threshold, s.n)),
  };
}
