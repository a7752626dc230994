// Helpers of the FLoRA tests (test/flora*.test.ts): float64 references of LoRA products with the error bound the
// stacking promises, small hand-made adapters, and the tiny-Llama 'flora' coordinator with recording sites.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { FederationClient } from '../client-sdk/client';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import type { SftData } from '../client-sdk/sft/lora-trainer';
import { loraModules } from '../proto/model/lora-stack';
import { Prng } from '../proto/prng';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { startCoordinator, tempDir, testIdentity, type Harness } from './harness';

export const BASE = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'llama', 'llama', 'base');
/** The demo's GPT-2 base (c_attn, c_proj, c_fc). */
export const GPT2 = path.resolve(__dirname, '..', '..', 'examples', 'base-model');
export const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
export const bits = (x: Float32Array): Buffer => Buffer.from(x.buffer, x.byteOffset, x.byteLength);

/** Per module s·B·A in float64 ([out, in]) and Σ|terms| (the error bound's scale), keyed by module path. */
export function products(adapter: TensorList, scaling = 1): Map<string, { p: Float64Array; abs: Float64Array }> {
  const out = new Map<string, { p: Float64Array; abs: Float64Array }>();
  for (const { path: key, a, b } of loraModules(adapter)) {
    const [r, n] = a.shape;
    const m = b.shape[0];
    const p = new Float64Array(m * n);
    const abs = new Float64Array(m * n);
    for (let o = 0; o < m; o++)
      for (let i = 0; i < n; i++)
        for (let j = 0; j < r; j++) {
          const t = scaling * b.data[o * r + j] * a.data[j * n + i];
          p[o * n + i] += t;
          abs[o * n + i] += Math.abs(t);
        }
    out.set(key, { p, abs });
  }
  return out;
}

/** Σ_k w_k·(site k's product) in float64, with Σ|terms|. */
export function weightedProducts(sites: { adapter: TensorList; w: number }[]): Map<string, { p: Float64Array; abs: Float64Array }> {
  const out = new Map<string, { p: Float64Array; abs: Float64Array }>();
  for (const s of sites) {
    for (const [k, { p, abs }] of products(s.adapter, s.w)) {
      const e = out.get(k) ?? { p: new Float64Array(p.length), abs: new Float64Array(p.length) };
      p.forEach((v, i) => {
        e.p[i] += v;
        e.abs[i] += Math.abs(abs[i]);
      });
      out.set(k, e);
    }
  }
  return out;
}

/**
 * got's product equals want's within 2^-24·(1 + roundings)·Σ|terms| (+ float64 slack), element by element: one
 * float32 rounding of every lora_B value (≤ 2^-24 of each term), and `roundings` more of a whole value (a dense
 * compaction each, ≤ 2^-24 of the value then, itself ≤ Σ|terms| of the terms summed so far).
 * Returns the worst error as a share of its bound.
 */
export function expectProduct(got: TensorList, want: Map<string, { p: Float64Array; abs: Float64Array }>, what: string, roundings = 0): number {
  const g = products(got);
  assert.deepEqual([...g.keys()], [...want.keys()], what);
  let worst = 0;
  for (const [k, { p, abs }] of want) {
    const x = g.get(k)!.p;
    for (let i = 0; i < p.length; i++) {
      const bound = 2 ** -24 * (1 + roundings) * abs[i] * (1 + 1e-6) + 1e-300;
      const err = Math.abs(x[i] - p[i]);
      worst = Math.max(worst, err / bound);
      if (err > bound) assert.fail(`${what} ${k}[${i}]: ${x[i]} against ${p[i]}, off by ${err} > ${bound}`);
    }
  }
  return worst;
}

export const A_IN = 16;
export const B_OUT = 14;
export const MOD = (i: number): string => `base_model.model.transformer.h.${i}.attn.c_attn`;

/** Two modules at rank r, lora_A [r, 16], lora_B [14, r]; random values from `rng` in the first `rank` components, zero beyond. */
export function twoModules(r: number, rank: number, rng: Prng | null): NamedTensor[] {
  const out: NamedTensor[] = [];
  for (const m of [0, 1]) {
    const a = new Float32Array(r * A_IN);
    const b = new Float32Array(B_OUT * r);
    if (rng) {
      for (let j = 0; j < rank; j++) for (let i = 0; i < A_IN; i++) a[j * A_IN + i] = (2 * rng.nextFloat() - 1) * 0.4;
      for (let o = 0; o < B_OUT; o++) for (let j = 0; j < rank; j++) b[o * r + j] = (2 * rng.nextFloat() - 1) * 0.03;
    }
    out.push({ name: `${MOD(m)}.lora_A.weight`, dtype: 'float32', shape: [r, A_IN], data: a });
    out.push({ name: `${MOD(m)}.lora_B.weight`, dtype: 'float32', shape: [B_OUT, r], data: b });
  }
  return out.sort((x, y) => (x.name < y.name ? -1 : 1));
}

/** The bytes of an update as the tensor stream carries them (float32 little-endian, layout order). */
export const bytesOf = (t: TensorList): Uint8Array => Buffer.concat(t.map((x) => Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength)));

export function data(seed: number): SftData {
  const rng = new Prng(seed);
  const ex = () => ({ prompt: Array.from({ length: 6 }, () => rng.nextInt(256)), completion: Array.from({ length: 3 }, () => rng.nextInt(256)) });
  return { train: Array.from({ length: 6 + seed }, ex), eval: Array.from({ length: 2 }, ex) };
}

/** A coordinator running 'flora' on the tiny Llama (lora.r 4, alpha 8, q_proj and v_proj), `total` rounds. */
export async function floraCoordinator(prefix: string, total: number, extra: Record<string, unknown> = {}): Promise<Harness> {
  const lora = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'], aggregation: 'flora' };
  const training = { localSteps: 2, batchSize: 2, maxSeqLen: 16, learningRate: 0.05 };
  return startCoordinator(
    await tempDir(prefix),
    { total, deadlineMs: 120_000 },
    { model: { dir: BASE, name: 'tiny-llama' }, lora, training, ...extra },
    { fromModelDir: true },
  );
}

/** A site whose trainer is `inner`, telling `onTrain` what each task sent it and what it trained. */
export function recordingSite(
  h: Harness,
  name: string,
  inner: Trainer,
  onTrain: (g: TensorList, p: TrainingPlan, out: TrainOutcome) => void,
): FederationClient {
  const trainer: Trainer = {
    backend: 'test',
    train: async (g, p, s) => {
      const out = await inner.train(g, p, s);
      onTrain(g, p, out);
      return out;
    },
    evaluate: (a, o) => inner.evaluate!(a, o),
  };
  return new FederationClient({ address: h.address, name, identity: testIdentity(name), trainer });
}
