// Per-round SecAgg parameters, fixed by the coordinator before the round starts and hashed into the session id
// (so every client masks under exactly the same parameters), plus the default graph/threshold choice.
import { ProtocolError, status } from '../errors';
import { isSortedUnique } from './bytes';

export type GraphSpec = { readonly kind: 'full' } | { readonly kind: 'harary'; readonly k: number };

export interface SecAggRoundConfig {
  /** Run id + round + attempt; unique per attempt, so nothing carries over between attempts. */
  readonly roundTag: string;
  /** Hex SHA-256 of the global checkpoint's manifest that the deltas are relative to. */
  readonly baseManifestSha256: string;
  /** Selected client ids, sorted. */
  readonly selected: readonly string[];
  /** Shamir threshold t: shares needed to rebuild a secret; also the fewest clients a round may end with. */
  readonly threshold: number;
  readonly graph: GraphSpec;
  /** L2 clip S applied to each client's delta (over the included tensors). */
  readonly clipNorm: number;
  /** n_cap: a client's weight is min(numExamples, n_cap) / n_cap. */
  readonly weightCap: number;
  /** N_max: sets the headroom bits so that a sum of N_max values never wraps mod 2^32. */
  readonly maxClients: number;
  /** Names of the tensors in the summed vector, sorted (FFA-LoRA sums only lora_B). */
  readonly include: readonly string[];
  /** 1 + Σ sizes of the included tensors (see vectorLayout); the server checks every masked input against it. */
  readonly vectorLength: number;
  /**
   * Differential privacy: z > 0 makes each site add its share of Gaussian noise before masking (noiseShareSigma);
   * absent or 0: none.
   */
  readonly noiseMultiplier?: number;
  /**
   * DP-FedAvg's adaptive clipping: σ_b > 0 makes each site append its bit 1[‖x‖ ≤ clipNorm] as one more value, on
   * the count grid (countScale), with its share of the count's noise (countShareSigma), so the sum's last value is
   * the noised count of unclipped updates; absent or 0: no such value.
   */
  readonly clipCountNoise?: number;
}

/** Fewer clients than this and each one learns a lot about the others from the published sum. */
export const MIN_CLIENTS = 5;
/** Full graph up to this many clients: O(N) pair masks per client stays below the sparse graph's cost x2. */
export const DEFAULT_FULL_GRAPH_MAX = 32;
/** shamir-secret-sharing works in GF(2^8): x-coordinates 1..255. */
export const MAX_HOLDERS = 255;

/** Holders of each client's secrets (its neighbours and itself) when `n` clients advertised. */
export function holderCount(graph: GraphSpec, n: number): number {
  return graph.kind === 'full' ? n : Math.min(graph.k, n - 1) + 1;
}

/**
 * Default graph and threshold for n selected clients. Full graph when n ≤ fullGraphMax; otherwise a Harary
 * graph with even degree k = 2·⌈log2 n⌉ (SecAgg+: O(log n) neighbours keep the survivor graph connected
 * w.h.p.). t = ⌊holders/2⌋ + 1, a strict majority of holders: an honest holder answers one unmask request
 * with either a b-share or an sk-share of a client, so a server cannot collect t of both. The round then
 * tolerates holders − t dropouts among any client's holders.
 */
export function chooseGraph(n: number, fullGraphMax = DEFAULT_FULL_GRAPH_MAX): { graph: GraphSpec; threshold: number } {
  let graph: GraphSpec = { kind: 'full' };
  if (n > fullGraphMax) {
    const k = 2 * Math.ceil(Math.log2(n));
    if (k < n - 1) graph = { kind: 'harary', k };
  }
  return { graph, threshold: Math.floor(holderCount(graph, n) / 2) + 1 };
}

/**
 * The weakest graph a client accepts for n selected clients: degree min(n − 1, 2⌈log2 n⌉) (what chooseGraph
 * picks with a full graph up to any size). A coordinator that chose k = 2 could pair a site with two colluding
 * neighbours and read it off (issue 13 #7), so the client checks rather than trusts the degree.
 */
export function minDegree(n: number): number {
  return Math.min(n - 1, 2 * Math.ceil(Math.log2(n)));
}

/** The degree of the graph over n clients (full: n − 1). */
export const degreeOf = (graph: GraphSpec, n: number): number => (graph.kind === 'full' ? n - 1 : Math.min(graph.k, n - 1));

/**
 * Consistency signatures a site needs before it reveals shares: at least t, and more than half of U1. Each honest
 * site signs one (U2, U3) per session, so two different lists cannot both gather more than |U1|/2 signatures from
 * honest sites: every honest site that reveals does so for the same lists. (t alone is not enough under SecAgg+,
 * where t ≈ k/2 ≪ |U1|/2 and disjoint groups could each sign a different view.)
 */
export function consistencyQuorum(threshold: number, u1Size: number): number {
  return Math.max(threshold, Math.floor(u1Size / 2) + 1);
}

/** Largest noise multiplier a round may carry (the grid keeps ~log2(1 + NOISE_TAIL·z/√n) bits of headroom). */
export const MAX_NOISE_MULTIPLIER = 1000;
/** Headroom for a site's noise share in its standard deviations: P(|N| > 10σ) ≈ 1.5e-23 per value. */
export const NOISE_TAIL = 10;

/** Largest count noise σ_b a round may carry (in sites; the count grid keeps NOISE_TAIL·σ_b/√n of headroom). */
export const MAX_COUNT_NOISE = 1e4;

/** Whether the vector ends with adaptive clipping's count value. */
export const hasCountSlot = (cfg: Pick<SecAggRoundConfig, 'clipCountNoise'>): boolean => (cfg.clipCountNoise ?? 0) > 0;

/**
 * The count grid: a site's bit is K = ⌊maxAbs/(1 + NOISE_TAIL·σ_b/√n)⌋ grid steps, so its bit plus its noise share
 * stays within ±maxAbs (what every value of the vector is held to) and N_max of them never wrap.
 */
export function countScale(cfg: Pick<SecAggRoundConfig, 'maxClients' | 'clipCountNoise' | 'selected' | 'clipNorm'>): number {
  const { maxAbs } = quantisation({ maxClients: cfg.maxClients, clipNorm: cfg.clipNorm });
  return Math.floor(maxAbs / (1 + (NOISE_TAIL * (cfg.clipCountNoise ?? 0)) / Math.sqrt(Math.max(1, cfg.selected.length))));
}

/** Standard deviation (in count-grid steps) of the count noise share each of the n selected sites adds: K·σ_b/√n. */
export function countShareSigma(cfg: SecAggRoundConfig): number {
  const s = cfg.clipCountNoise ?? 0;
  return s > 0 ? (countScale(cfg) * s) / Math.sqrt(cfg.selected.length) : 0;
}

/**
 * The noise multiplier a round's release amounts to: z on the update sum and, with adaptive clipping's count, σ_b on
 * a count whose sensitivity to one site is ½ are together the Gaussian mechanism at (z^−2 + (2σ_b)^−2)^−1/2 (Andrew
 * et al. 2021, Theorem 1). What a site's noise floor is held to: the count spends part of the noise.
 */
export function jointNoiseMultiplier(z: number, clipCountNoise = 0): number {
  return clipCountNoise > 0 ? (z ** -2 + (2 * clipCountNoise) ** -2) ** -0.5 : z;
}

type QuantisationInput = Pick<SecAggRoundConfig, 'maxClients' | 'clipNorm'> & Partial<Pick<SecAggRoundConfig, 'noiseMultiplier' | 'selected'>>;

/**
 * Bits per value and scales: b = 32 − ⌈log2 N_max⌉, so Σ of N_max values in [−(2^(b−1)−1), 2^(b−1)−1] fits int32.
 * With noise (z > 0) the clip norm maps to a smaller part of the range, maxAbs/(1 + NOISE_TAIL·z/√n), so a
 * clipped value plus its site's noise share stays within ±maxAbs.
 */
export function quantisation(cfg: QuantisationInput): {
  bits: number;
  maxAbs: number;
  valueScale: number;
  weightScale: number;
} {
  const bits = 32 - Math.ceil(Math.log2(cfg.maxClients));
  const maxAbs = 2 ** (bits - 1) - 1;
  const z = cfg.noiseMultiplier ?? 0;
  const headroom = z > 0 ? 1 + (NOISE_TAIL * z) / Math.sqrt(Math.max(1, cfg.selected?.length ?? 1)) : 1;
  return { bits, maxAbs, valueScale: maxAbs / (cfg.clipNorm * headroom), weightScale: maxAbs };
}

/**
 * Standard deviation (in grid steps) of the noise share each of the n selected sites adds: z·Δ/√n, so the n
 * shares sum to N(0, (z·Δ)²). Δ = S·valueScale + √d bounds one site's encoded contribution in L2 (its clipped
 * update on the grid, plus at most one step per value from stochastic rounding), the sensitivity the noise covers.
 */
export function noiseShareSigma(cfg: SecAggRoundConfig): number {
  const z = cfg.noiseMultiplier ?? 0;
  if (!(z > 0)) return 0;
  const d = cfg.vectorLength - 1 - (hasCountSlot(cfg) ? 1 : 0);
  return (z * (cfg.clipNorm * quantisation(cfg).valueScale + Math.sqrt(d))) / Math.sqrt(cfg.selected.length);
}

const bad = (msg: string): ProtocolError => new ProtocolError(status.INVALID_ARGUMENT, `secagg config: ${msg}`);
const isInt = (x: number, lo: number, hi: number): boolean => Number.isSafeInteger(x) && x >= lo && x <= hi;

export function validateConfig(cfg: SecAggRoundConfig): void {
  if (typeof cfg.roundTag !== 'string' || cfg.roundTag.length === 0) throw bad('roundTag must be a non-empty string');
  if (!/^[0-9a-f]{64}$/.test(cfg.baseManifestSha256)) throw bad('baseManifestSha256 must be 64 lowercase hex digits');
  const n = cfg.selected.length;
  if (!isSortedUnique(cfg.selected) || cfg.selected.some((s) => s.length === 0)) throw bad('selected must be sorted, unique, non-empty ids');
  if (!isInt(cfg.maxClients, MIN_CLIENTS, 2 ** 16)) throw bad(`maxClients ${cfg.maxClients} must be an integer in [${MIN_CLIENTS}, 65536]`);
  if (n < MIN_CLIENTS) throw bad(`${n} selected clients; secure aggregation needs at least ${MIN_CLIENTS}`);
  if (n > cfg.maxClients) throw bad(`${n} selected clients exceed maxClients ${cfg.maxClients}`);
  if (cfg.graph.kind === 'harary' && !(isInt(cfg.graph.k, 2, MAX_HOLDERS - 1) && cfg.graph.k % 2 === 0)) {
    throw bad(`Harary degree k = ${cfg.graph.k} must be an even integer in [2, ${MAX_HOLDERS - 1}]`);
  }
  if (degreeOf(cfg.graph, n) < minDegree(n))
    throw bad(`graph degree ${degreeOf(cfg.graph, n)} is below the minimum ${minDegree(n)} (2⌈log2 N⌉) for ${n} clients`);
  const holders = holderCount(cfg.graph, n);
  if (holders > MAX_HOLDERS) throw bad(`${holders} holders per secret exceed the GF(2^8) limit of ${MAX_HOLDERS}; use a Harary graph`);
  if (!isInt(cfg.threshold, 2, holders)) throw bad(`threshold ${cfg.threshold} must be an integer in [2, ${holders}] (holders per secret)`);
  if (2 * cfg.threshold <= holders)
    throw bad(`threshold ${cfg.threshold} must exceed half of the ${holders} holders, or a server could collect both shares of a client`);
  if (!(Number.isFinite(cfg.clipNorm) && cfg.clipNorm > 0)) throw bad(`clipNorm ${cfg.clipNorm} must be positive and finite`);
  if (!isInt(cfg.weightCap, 1, quantisation(cfg).maxAbs))
    throw bad(`weightCap ${cfg.weightCap} must be a positive integer ≤ ${quantisation(cfg).maxAbs} (the weight grid)`);
  const z = cfg.noiseMultiplier ?? 0;
  if (!(Number.isFinite(z) && z >= 0 && z <= MAX_NOISE_MULTIPLIER)) throw bad(`noiseMultiplier ${z} must be a finite number in [0, ${MAX_NOISE_MULTIPLIER}]`);
  if (cfg.include.length === 0 || !isSortedUnique(cfg.include)) throw bad('include must be a non-empty, sorted, unique list of tensor names');
  const c = cfg.clipCountNoise ?? 0;
  if (!(Number.isFinite(c) && c >= 0 && c <= MAX_COUNT_NOISE)) throw bad(`clipCountNoise ${c} must be a finite number in [0, ${MAX_COUNT_NOISE}]`);
  if (c > 0 && !(countScale(cfg) >= 1)) throw bad(`clipCountNoise ${c} leaves the count grid no step for a site's bit`);
  const least = hasCountSlot(cfg) ? 3 : 2;
  if (!isInt(cfg.vectorLength, least, 2 ** 31)) throw bad(`vectorLength ${cfg.vectorLength} must be an integer ≥ ${least}`);
}
