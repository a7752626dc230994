// A compute kernel as the engine records it: WGSL source with every shape and offset baked in as a constant, the
// buffers it binds (in binding order) and its grid. Baking constants means no per-dispatch uniform buffer at all
// (the per-dispatch uniform + bind group is what makes tfjs slow here); identical sources share one pipeline.

export type ElemType = 'f32' | 'f16' | 'u32' | 'i32';

export interface Binding {
  /** Name of an engine buffer (see plan.ts); also the WGSL variable name. */
  readonly buffer: string;
  readonly type: ElemType;
  readonly write: boolean;
}

/** Grid in workgroups; a function when it depends on the step (e.g. the number of scored positions). */
export type Grid = readonly [number, number, number] | ((step: StepShape) => readonly [number, number, number]);

/** What changes from step to step without changing any pipeline. */
export interface StepShape {
  /** Scored (position, target) pairs this step. */
  readonly pairs: number;
}

export interface Kernel {
  readonly label: string;
  readonly code: string;
  readonly bindings: readonly Binding[];
  readonly grid: Grid;
  /** Whether the WGSL needs `enable f16;` (any f16 binding or f16 arithmetic). */
  readonly f16?: boolean;
  readonly subgroupMatrix?: boolean;
}

/** `@group(0) @binding(i) var<storage, …> name: array<T>;` lines for a binding list. */
export function declareBindings(bs: readonly Binding[]): string {
  return bs.map((b, i) => `@group(0) @binding(${i}) var<storage, ${b.write ? 'read_write' : 'read'}> ${b.buffer}: array<${b.type}>;`).join('\n');
}

/** Bindings deduplicated by buffer (a buffer bound twice must be bound once, read_write if either writes). */
export function mergeBindings(bs: readonly Binding[]): Binding[] {
  const out = new Map<string, Binding>();
  for (const b of bs) {
    const prev = out.get(b.buffer);
    if (prev && prev.type !== b.type) throw new Error(`buffer ${b.buffer} bound as ${prev.type} and ${b.type}`);
    out.set(b.buffer, prev ? { ...prev, write: prev.write || b.write } : b);
  }
  return [...out.values()];
}

/** The header every kernel starts with: enables, bindings. */
export function header(bs: readonly Binding[], opts: { f16?: boolean; subgroupMatrix?: boolean } = {}): string {
  const en: string[] = [];
  if (opts.f16 || bs.some((b) => b.type === 'f16')) en.push('enable f16;');
  if (opts.subgroupMatrix) en.push('enable chromium_experimental_subgroup_matrix;');
  return [...en, declareBindings(bs)].join('\n');
}

/** A WGSL f32 literal (always with a decimal point or exponent, never `NaN`). */
export function f32(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`not a finite constant: ${x}`);
  const s = Math.fround(x).toPrecision(9);
  return /[.e]/.test(s) ? s : s + '.0';
}

export function u32(x: number): string {
  if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new Error(`not a u32 constant: ${x}`);
  return `${x}u`;
}

export const ceilDiv = (a: number, b: number): number => Math.floor((a + b - 1) / b);
