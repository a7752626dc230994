// The two hand-made rounds the server-optimiser tests share (server-optimisers, server-schedule,
// fedsgd-bias-correction): one tensor `w`, two sites per round with unequal then equal weights, so each round's
// example-weighted mean update Δ is exact in binary:
//   round 1, weights 1 and 3: Δ1 = (1·[0.5, −0.25, 0] + 3·[0.25, 0.75, 0]) / 4 = [0.3125, 0.5, 0];
//   round 2, weights 2 and 2: Δ2 = ([−0.5, 0.25, 0.5] + [0, 0.25, −0.25]) / 2 = [−0.25, 0.25, 0.125].
import type { ClientUpdate } from '../coordinator/strategy/strategy';
import type { NamedTensor } from '../proto/tensors';

export const f = Math.fround;
export const t = (name: string, values: number[]): NamedTensor => ({ name, dtype: 'float32', shape: [values.length], data: Float32Array.from(values) });
export const upd = (clientId: string, numExamples: number, values: number[]): ClientUpdate => ({ clientId, numExamples, delta: [t('w', values)] });
export const values = (xs: readonly NamedTensor[], name: string): number[] => Array.from(xs.find((x) => x.name === name)!.data);

export const GLOBAL = [t('w', [0.5, -1, 0.125])];
export const ROUND1 = [upd('a', 1, [0.5, -0.25, 0]), upd('b', 3, [0.25, 0.75, 0])];
export const D1 = [0.3125, 0.5, 0];
export const ROUND2 = [upd('a', 2, [-0.5, 0.25, 0.5]), upd('b', 2, [0, 0.25, -0.25])];
export const D2 = [-0.25, 0.25, 0.125];
