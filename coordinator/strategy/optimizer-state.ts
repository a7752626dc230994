// How a server optimiser reads its state from the base version and builds the state it hands back: one float32
// tensor per (kind, adapter tensor), named `<kind>/<adapter tensor>` (e.g. `m/…lora_A.weight`). Float32 as the
// adapter itself: what is saved is exactly what the next round reads, so a restarted coordinator continues
// bit for bit. The optimisers compute each step in float64 and round the state once, when storing it.
import type { NamedTensor, TensorList } from '../../proto/tensors';
import type { ServerState } from './strategy';

export class OptimizerState {
  private readonly before: ReadonlyMap<string, NamedTensor>;
  private readonly after = new Map<string, NamedTensor>();
  private readonly shapes: ReadonlyMap<string, readonly number[]>;

  /** `label` names the strategy in errors. */
  constructor(
    private readonly label: string,
    private readonly global: TensorList,
    state: ServerState | undefined,
  ) {
    if (!state) throw new Error(`${label} keeps a server optimiser state between rounds: aggregate() needs the base version's state`);
    this.before = new Map(state.tensors.map((t) => [t.name, t]));
    this.shapes = new Map(global.map((g) => [g.name, g.shape]));
  }

  /** The base version's `kind` values for one adapter tensor, or undefined when it has none (the first step). */
  read(kind: string, name: string, length: number): Float32Array | undefined {
    const t = this.before.get(`${kind}/${name}`);
    if (!t) return undefined;
    if (t.data.length !== length) throw new RangeError(`${this.label}: state ${kind}/${name} holds ${t.data.length} values; the tensor has ${length}`);
    return t.data;
  }

  /**
   * Stores the state after this step: float64 values rounded to float32 here, once; float32 values (already rounded,
   * by the WebAssembly close, fedopt-kernel.ts) kept as they are.
   */
  write(kind: string, name: string, values: Float64Array | Float32Array): void {
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    this.after.set(`${kind}/${name}`, { name: `${kind}/${name}`, dtype: 'float32', shape: [...this.shapes.get(name)!], data });
  }

  /** A scalar of the base version's state (a one-value tensor named `key`), or undefined when it has none. */
  readScalar(key: string): number | undefined {
    const t = this.before.get(key);
    if (!t) return undefined;
    if (t.data.length !== 1) throw new RangeError(`${this.label}: state ${key} holds ${t.data.length} values; a scalar has 1`);
    return t.data[0];
  }

  /** Stores a scalar of the state after this step (rounded to float32 here, once, like the per-value kinds). */
  writeScalar(key: string, value: number): void {
    this.after.set(key, { name: key, dtype: 'float32', shape: [1], data: Float32Array.of(value) });
  }

  /**
   * The state after this round, in name order: what was written, plus the base state of each `kind` for tensors
   * the sum did not touch (they did not move, so neither did their state).
   */
  commit(state: ServerState, kinds: readonly string[]): void {
    for (const g of this.global) {
      for (const k of kinds) {
        const key = `${k}/${g.name}`;
        const prior = this.before.get(key);
        if (!this.after.has(key) && prior) this.after.set(key, prior);
      }
    }
    state.tensors = [...this.after.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
