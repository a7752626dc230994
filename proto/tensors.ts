// Named tensors as they cross every boundary in fedtune: the wire, checkpoints, and the Trainer interface.
// Only float32 travels today; the dtype field exists so the wire format can grow without a version bump.

export type DType = 'float32';

export interface NamedTensor {
  /** PEFT key, e.g. `base_model.model.transformer.h.0.attn.c_attn.lora_A.weight`. */
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** An adapter (or an update to one): tensors sorted by name, so every party sees the same layout. */
export type TensorList = readonly NamedTensor[];

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function sortByName<T extends { name: string }>(xs: readonly T[]): T[] {
  return [...xs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Elementwise a - b for two adapters of the same layout. */
export function subTensors(a: TensorList, b: TensorList): NamedTensor[] {
  assertSameLayout(a, b);
  return a.map((t, i) => {
    const out = new Float32Array(t.data.length);
    const y = b[i].data;
    for (let j = 0; j < out.length; j++) out[j] = t.data[j] - y[j];
    return { name: t.name, dtype: t.dtype, shape: t.shape, data: out };
  });
}

export function assertSameLayout(a: TensorList, b: TensorList): void {
  if (a.length !== b.length) throw new Error(`layout mismatch: ${a.length} tensors vs ${b.length}`);
  for (let i = 0; i < a.length; i++) {
    if (a[i].name !== b[i].name) throw new Error(`layout mismatch at ${i}: ${a[i].name} vs ${b[i].name}`);
    if (a[i].shape.join(',') !== b[i].shape.join(',')) {
      throw new Error(`shape mismatch for ${a[i].name}: [${a[i].shape}] vs [${b[i].shape}]`);
    }
  }
}
