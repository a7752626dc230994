// What the in-memory SecAgg tests share (test/secagg-core*.test.ts, secagg-primitives, secagg-encoding): small
// tensors and deterministic data, a round's config, n simulated clients with their encoded updates, the check that a
// call is refused with a status and words, and a whole round checked bit for bit against plain fixed-point FedAvg.
import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';
import type { status } from '@grpc/grpc-js';
import { ProtocolError } from '../proto/errors';
import type { NamedTensor } from '../proto/tensors';
import { chooseGraph, decodeSum, encodeUpdate, sumVectors, vectorLayout, type SecAggRoundConfig, type GraphSpec } from '../proto/secagg';
import { simulateRound, type SimClient, type SimDrops } from '../proto/secagg/simulate';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

export const seedOf = (s: string): Uint8Array => new Uint8Array(createHash('sha256').update(s).digest());
export const t = (name: string, values: number[], shape: number[] = [values.length]): NamedTensor => ({
  name,
  dtype: 'float32',
  shape,
  data: Float32Array.from(values),
});
export const hexOf = (a: Uint32Array | Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');
export const idOf = (i: number): string => `c${String(i).padStart(3, '0')}`;

/** Deterministic test data (not cryptographic: deltas only). */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296) * 2 - 1;
}

export function baseConfig(over: Partial<SecAggRoundConfig> = {}): SecAggRoundConfig {
  return {
    roundTag: 'run1/r1/a0',
    baseManifestSha256: 'ab'.repeat(32),
    selected: [],
    threshold: 3,
    graph: { kind: 'full' },
    clipNorm: 1,
    weightCap: 100,
    maxClients: 1024,
    include: ['x'],
    vectorLength: 4,
    ...over,
  };
}

/** n clients with small adapters (two tensors, only lora_B summed), their encoded updates, and a config. */
export function setup(n: number, opts: { graph?: GraphSpec; threshold?: number; roundTag?: string } = {}) {
  const ids = Array.from({ length: n }, (_, i) => idOf(i));
  const global = [t('l.lora_A', Array.from({ length: 6 }, lcg(1)), [2, 3]), t('l.lora_B', Array.from({ length: 8 }, lcg(2)), [4, 2])];
  const include = ['l.lora_B'];
  const chosen = chooseGraph(n);
  const cfg: SecAggRoundConfig = baseConfig({
    roundTag: opts.roundTag ?? 'run1/r1/a0',
    selected: ids,
    graph: opts.graph ?? chosen.graph,
    threshold: opts.threshold ?? chosen.threshold,
    include,
    vectorLength: vectorLayout(global, include).length,
    maxClients: 1024,
  });
  const identities = ids.map((id) => nacl.sign.keyPair.fromSeed(seedOf(`identity-${id}`)));
  const encoded = new Map(
    ids.map((id, i) => {
      const r = lcg(100 + i);
      const delta = global.map((g) =>
        t(
          g.name,
          Array.from(g.data, () => 0.3 * r()),
          [...g.shape],
        ),
      );
      return [id, encodeUpdate(delta, 10 + 7 * i, cfg, seedOf(`round-${id}`))];
    }),
  );
  const clients: SimClient[] = ids.map((id, i) => ({
    id,
    identitySecretKey: identities[i].secretKey,
    identityPublicKey: identities[i].publicKey,
    input: () => encoded.get(id)!,
  }));
  return { ids, cfg, global, clients, encoded, identities };
}

export async function expectRejection(f: () => unknown, code: status, pattern: RegExp): Promise<void> {
  let caught: unknown;
  try {
    await f();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected a ProtocolError matching ${pattern}`).to.be.instanceOf(ProtocolError);
  expect((caught as ProtocolError).message).to.match(pattern);
  expect((caught as ProtocolError).code, (caught as ProtocolError).message).to.equal(code);
}

/** Runs a round and checks the result against plain fixed-point FedAvg over the survivors. */
export async function roundMatchesPlain(s: ReturnType<typeof setup>, drops: SimDrops = {}): Promise<readonly string[]> {
  const res = await simulateRound(s.cfg, s.clients, drops);
  const gone = new Set([...(drops.beforeAdvertise ?? []), ...(drops.beforeShares ?? []), ...(drops.beforeInput ?? [])]);
  expect(res.survivors).to.deep.equal(s.ids.filter((id) => !gone.has(id)));
  const plain = sumVectors(res.survivors.map((id) => s.encoded.get(id)!));
  expect(hexOf(res.sum)).to.equal(hexOf(plain));
  const a = decodeSum(res.sum, s.cfg, s.global).adapter;
  const b = decodeSum(plain, s.cfg, s.global).adapter;
  expect(a.map((x) => hexOf(x.data))).to.deep.equal(b.map((x) => hexOf(x.data)));
  return res.survivors;
}
