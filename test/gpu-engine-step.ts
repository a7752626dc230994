// One engine step at learning rate 0 for the GPU checks (test/gpu-engine*.ts): a LoraEngine built and loaded with
// the adapter, its loss and flat adapter gradient read back; and the tolerances each path is held to against a
// reference (tfjs or torch) on the same weights and data.
import type { EngineDevice } from '../client-sdk/engine/device';
import { LoraEngine, type EngineOptions, type StepInput } from '../client-sdk/engine/engine';
import type { EnginePath } from '../client-sdk/engine/program';

type Check = (name: string, ok: boolean, detail: string) => void;

/** Relative error allowed on the loss and on each adapter gradient tensor: f32 to the reference's own precision. */
export function stepTolerance(p: EnginePath): { readonly loss: number; readonly grad: number } {
  return p === 'f32' ? { loss: 1e-5, grad: 1e-4 } : { loss: 2e-3, grad: 3e-2 };
}

/**
 * Builds the engine, loads theta0 and runs one step with lr 0: its loss and gradient, and the engine (for further
 * steps; the caller disposes of it). A shader or pipeline error is a failed `${label}: compiles` check and undefined.
 */
export async function engineStep(
  ed: EngineDevice,
  opts: EngineOptions,
  theta0: Float32Array,
  inp: Pick<StepInput, 'ids' | 'pairPos' | 'pairTarget'>,
  check: Check,
  label: string,
): Promise<{ e: LoraEngine; loss: number; grad: Float32Array } | undefined> {
  const e = new LoraEngine(ed, opts);
  const errs = await e.compileErrors();
  if (errs.length) {
    check(`${label}: compiles`, false, errs.slice(0, 3).join(' | '));
    await e.dispose();
    return undefined;
  }
  e.setAdapter(theta0);
  e.step({ ...inp, lr: 0, weightDecay: 0 });
  const [loss] = await e.readLoss();
  const grad = await e.readF32('grad', e.layout.adapterSize);
  return { e, loss, grad };
}
