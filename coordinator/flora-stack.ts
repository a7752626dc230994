// FLoRA stacking (Wang et al., NeurIPS 2024; lora.aggregation 'flora'). Each selected site k trains a FRESH LoRA
// of its own rank r_k ≤ lora.r on top of the version it was sent and uploads its factors (A_k, s_k·B_k), s_k its
// scaling folded into B by the site, zero-padded to lora.r (one upload layout for the round: zeroAdapter). The
// round's components are stacked: A_round = [A_1; …; A_K] (rows), B_round = [p_1·s_1B_1, …, p_K·s_KB_K] (columns),
// p_k = n_k / Σn (FedAvg's weights), so B_round·A_round = Σ_k p_k s_k B_k A_k: the weighted mean of the sites'
// products, with none of FedIT's cross terms. A version holds the stack of every round so far (the previous
// version's components, then this round's): an exact PEFT adapter of rank R = Σ ranks, scaling 1 (its
// adapter_config says lora_alpha = r: versionAdapterConfig), so `checkpoints export` still yields a PEFT adapter and
// a site that joins late merges the whole cumulative delta by training on top of the version it downloads.
//   Order: sites are stacked by client id, never by arrival, so the version is the same bytes whatever the order.
//   Exactness: each committed lora_B value is fround(p_k · uploaded value), one float32 rounding (relative ≤ 2^-24);
//   A is copied bit for bit. A site's components beyond its declared rank are dropped only when they are zero (the
//   report says the rank, before or after the upload: whichever comes second is refused if the rank leaves non-zero
//   components out). The rank is spooled with the update and declared again at the close (redeclareFloraRanks), so a
//   restart or a revocation's rebuild of the sum stacks what an uninterrupted round would.
//   Bound: once R would pass K = max over modules of min(d_in, d_out), where a dense delta is no larger than the
//   stack, the version holds the cumulative delta in dense factored form instead (compactComponents: per module ΔW
//   accumulated in float64 and rounded once to float32, the identity as the other factor, rank K, still a PEFT
//   adapter), and every later version stays at rank K. Downloads and the sites' stacked path stop growing there.
// The Strategy seam: this is the Strategy a 'flora' run uses (coordinator.ts), its Aggregation keeping every
// site's factors (the stack needs them one by one; the round's memory grows with its cohort, as FLoRA's download
// does). The close's arithmetic is flora-next.ts's; the round's close runs it in worker threads (flora-close.ts:
// past K it is seconds of float64 loops, which must not stall the event loop, shared by module among the host's
// cores, flora-shares.ts). Secure aggregation, DP and server
// optimisers are refused at config load (lora-aggregation.ts).
import type { NamedTensor, TensorList } from '../proto/tensors';
import { floraInitSeed } from '../proto/model/lora-aggregation';
import type { CoordinatorConfig } from './config-types';
import { uniformRank, zeroBeyond } from '../proto/model/lora-stack';
import { asTensors, nextVersion, type SiteFactors, type StackInput } from './flora-next';
import { FLORA_THREAD_FILE, nextVersionOffThread } from './flora-close';
import type { Task } from './task';
import { AdmissionError, type Aggregation, type ClientUpdate, type ServerState, type Strategy, type UpdateFold, type WeightedSum } from './strategy/strategy';

/** Largest |value| a factor may hold (fresh LoRA factors are O(1/√d_in) for A and small for B; FedAvg's own bound). */
export const MAX_ABS_FACTOR = 128;

/** A 'flora' round's "sum": every site's factors (sorted by client id), and the ranks their reports declared. */
export interface StackSum extends WeightedSum {
  readonly flora: { readonly layout: readonly NamedTensor[]; readonly sites: readonly SiteFactors[]; readonly ranks: ReadonlyMap<string, number> };
}

function isStackSum(s: WeightedSum): s is StackSum {
  return 'flora' in s;
}

/** Why `values[from, to)` cannot be a factor value, naming the first bad one. */
function checkValues(layout: readonly NamedTensor[], values: Float32Array, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    const v = values[i];
    if (Math.abs(v) < MAX_ABS_FACTOR) continue; // one comparison catches NaN, ±Inf and the bound
    let off = 0;
    for (const t of layout) {
      if (i < off + t.data.length) {
        const why = Number.isFinite(v) ? `outside ±${MAX_ABS_FACTOR}` : 'factors must be finite';
        throw new AdmissionError(`tensor ${t.name} holds ${v} at element ${i - off}; ${why}`);
      }
      off += t.data.length;
    }
  }
}

/** Refuses factors that are non-zero beyond the rank their site declared (the stack would drop part of them). */
function fitsRank(factors: TensorList, rank: number): void {
  if (!zeroBeyond(factors, rank)) throw new AdmissionError(`lora_rank ${rank}: the uploaded factors have non-zero components beyond it`);
}

class StackAggregation implements Aggregation {
  private readonly reserved = new Map<string, number>();
  private readonly sites = new Map<string, SiteFactors>();
  private readonly ranks = new Map<string, number>();
  /** Updates whose every byte arrived, until they count or not: a report in that window is checked against them too. */
  private readonly finished = new Map<string, Float32Array>();
  private readonly total: number;

  constructor(private readonly layout: readonly NamedTensor[]) {
    this.total = layout.reduce((s, t) => s + t.data.length, 0);
  }

  get count(): number {
    return this.sites.size;
  }

  private reserve(clientId: string, numExamples: number): void {
    if (this.reserved.has(clientId)) throw new AdmissionError(`FLoRA: two updates from ${clientId}`);
    if (!(Number.isSafeInteger(numExamples) && numExamples >= 1))
      throw new AdmissionError(`FLoRA: ${clientId} reports ${numExamples} examples; need a positive integer`);
    this.reserved.set(clientId, numExamples);
  }

  open(clientId: string, numExamples: number): UpdateFold {
    this.reserve(clientId, numExamples);
    const bytes = new Uint8Array(this.total * 4);
    const values = new Float32Array(bytes.buffer); // float32 little-endian, as the tensor stream carries them
    let at = 0;
    return {
      push: (chunk: Uint8Array) => {
        if (at + chunk.length > bytes.length) throw new AdmissionError(`the update carries more than the ${this.total} values of the round's layout`);
        const from = at >>> 2;
        bytes.set(chunk, at);
        at += chunk.length;
        checkValues(this.layout, values, from, at >>> 2);
      },
      finish: () => {
        if (at !== bytes.length) throw new AdmissionError(`the update carries ${at} of the ${bytes.length} bytes of the round's layout`);
        this.fitsDeclared(clientId, asTensors(this.layout, values));
        this.finished.set(clientId, values);
      },
      needsReplay: false,
      replay: () => {
        throw new Error('FLoRA folds in one pass');
      },
      commit: () => {
        this.finished.delete(clientId);
        this.sites.set(clientId, { clientId, numExamples, values });
      },
      // Nothing of an update is in any shared sum before commit(): there is nothing to take back.
      folded: 0,
      abandon: () => {
        this.finished.delete(clientId);
        this.reserved.delete(clientId);
      },
      undo: () => true,
      undone: () => undefined,
    };
  }

  admit(u: ClientUpdate): void {
    if (u.delta.length !== this.layout.length) throw new AdmissionError(`FLoRA: ${u.delta.length} tensors, the round's layout has ${this.layout.length}`);
    u.delta.forEach((t, k) => {
      const g = this.layout[k];
      if (t.name !== g.name || t.shape.join() !== g.shape.join())
        throw new AdmissionError(`FLoRA: ${t.name} [${t.shape}] where the layout has ${g.name} [${g.shape}]`);
      if (t.data.length !== g.data.length)
        throw new AdmissionError(`FLoRA: ${t.name} carries ${t.data.length} values; its shape [${t.shape}] holds ${g.data.length}`);
      checkValues([t], Float32Array.from(t.data), 0, t.data.length);
    });
    this.fitsDeclared(u.clientId, u.delta);
    this.reserve(u.clientId, u.numExamples);
  }

  release(clientId: string): void {
    this.reserved.delete(clientId);
  }

  add(u: ClientUpdate): void {
    const n = this.reserved.get(u.clientId);
    if (n !== u.numExamples || this.sites.has(u.clientId)) throw new Error(`FLoRA: update of ${u.clientId} was not admitted`);
    const values = new Float32Array(this.total);
    let off = 0;
    for (const t of u.delta) {
      values.set(t.data, off);
      off += t.data.length;
    }
    this.sites.set(u.clientId, { clientId: u.clientId, numExamples: n, values });
  }

  /**
   * The rank a site's report declares (1..lora.r): refused (INVALID_ARGUMENT, by the caller) when its factors, already
   * here, are non-zero beyond it: the stack drops those components, so the version would lose part of its product.
   */
  declareRank(clientId: string, rank: number): void {
    const values = this.sites.get(clientId)?.values ?? this.finished.get(clientId);
    if (values) fitsRank(asTensors(this.layout, values), rank);
    this.ranks.set(clientId, rank);
  }

  /** An update arriving after its site's report (any order is allowed) must fit the rank that report declared. */
  private fitsDeclared(clientId: string, factors: TensorList): void {
    const rank = this.ranks.get(clientId);
    if (rank !== undefined) fitsRank(factors, rank);
  }

  private totalWeight(): number {
    let w = 0;
    for (const s of this.sites.values()) w += s.numExamples;
    return w;
  }

  sum(): StackSum {
    const sites = [...this.sites.values()].sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0));
    return { tensors: new Map(), totalWeight: this.totalWeight(), scale: 1, flora: { layout: this.layout, sites, ranks: new Map(this.ranks) } };
  }

  weights(): Record<string, number> {
    const total = this.totalWeight();
    return Object.fromEntries([...this.sites.values()].map((s) => [s.clientId, s.numExamples / total]));
  }
}

/** The close's input from a 'flora' round's sum (an Error for any other sum). */
function stackInput(sum: WeightedSum): StackInput {
  if (!isStackSum(sum)) throw new Error("lora.aggregation 'flora' needs each site's factors; this sum has none (secure aggregation?)");
  return { ...sum.flora, totalWeight: sum.totalWeight };
}

/** The Strategy of a 'flora' run: FedAvg's weights, stacking instead of averaging (the arithmetic: flora-next.ts). */
export class FloraStacking implements Strategy {
  // The manifest's strategy: the weights are FedAvg's (n_k / Σn); its config.lora.aggregation says 'flora'.
  readonly name = 'fedavg';
  readonly maxAbsDelta = MAX_ABS_FACTOR;

  /** `threadFile`: the close's worker thread script (flora-close.ts; tests put a failing one there); `threads`: at most that many (flora-shares.ts). */
  constructor(
    private readonly threadFile = FLORA_THREAD_FILE,
    private readonly threads?: number,
  ) {}

  begin(layout: TensorList): StackAggregation {
    return new StackAggregation(layout.map((t) => ({ name: t.name, dtype: 'float32', shape: [...t.shape], data: new Float32Array(t.data.length) })));
  }

  /** The next version on the calling thread (flora-next.ts nextVersion). */
  aggregate(global: TensorList, sum: WeightedSum): NamedTensor[] {
    return nextVersion(global, stackInput(sum));
  }

  /**
   * The same next version, bit for bit, computed in worker threads (flora-close.ts): what the round's close calls,
   * so that a close past the dense rank leaves the event loop free. The sum's factors are consumed: a sum is closed
   * once.
   */
  aggregateOffThread(global: TensorList, sum: WeightedSum, _state?: ServerState, signal?: AbortSignal): Promise<NamedTensor[]> {
    return nextVersionOffThread(global, stackInput(sum), { threadFile: this.threadFile, signal, threads: this.threads });
  }
}

/** The report's rank, checked against a 'flora' round's factors (no-op for another round's aggregation). */
export function declareFloraRank(agg: Aggregation | undefined, clientId: string, rank: number): void {
  if (agg instanceof StackAggregation && rank > 0) agg.declareRank(clientId, rank);
}

/**
 * The ranks the sites' reports declared, declared again to a 'flora' round's Aggregation at its close: an update
 * carried over a restart has its report read back from the spool (round-open.ts), and a sum rebuilt without a
 * revoked site is a new Aggregation (running-sum.ts dropRevoked); without this, such an update would be stacked at
 * lora.r, its zero padding too (exact, but wider than an uninterrupted round's stack, so K comes sooner). A rank the
 * factors contradict (only a damaged spool record can: the live report was checked) is not declared: that update
 * keeps all its components, exact still. Returns the client ids of those.
 */
export function redeclareFloraRanks(agg: Aggregation | undefined, tasks: Iterable<Pick<Task, 'clientId' | 'state' | 'metrics'>>): string[] {
  const contradicted: string[] = [];
  if (!(agg instanceof StackAggregation)) return contradicted;
  for (const t of tasks) {
    const rank = t.metrics?.loraRank;
    if (t.state !== 'uploaded' || rank === undefined) continue;
    try {
      agg.declareRank(t.clientId, rank);
    } catch (e) {
      if (!(e instanceof AdmissionError)) throw e;
      contradicted.push(t.clientId);
      // Nor is it the manifest's: the version holds every component of that update.
      const { loraRank: _dropped, ...rest } = t.metrics!;
      t.metrics = rest;
    }
  }
  return contradicted;
}

/** adapter_config.json of a 'flora' version: r = the stack's rank R and lora_alpha = R (scaling 1, folded into B). */
export function versionAdapterConfig(base: Record<string, unknown>, adapter: TensorList): Record<string, unknown> {
  const r = uniformRank(adapter);
  return { ...base, r, lora_alpha: r, use_rslora: false };
}

/** Under 'flora': seeds.floraInit, each site's fresh lora_A seed (floraInitSeed of its task seed), by client id. */
export function floraSeeds(
  cfg: Pick<CoordinatorConfig, 'lora'>,
  seeds: Record<string, number | Record<string, number>>,
): { floraInit?: Record<string, number> } {
  const clients = seeds.clients;
  if (cfg.lora.aggregation !== 'flora' || typeof clients !== 'object') return {};
  return { floraInit: Object.fromEntries(Object.entries(clients).map(([id, seed]) => [id, floraInitSeed(seed)])) };
}
