// Dawn's WGSL compiler without a GPU, for the engine's CPU tests: npm `webgpu` on its null backend offers f16,
// subgroups and subgroup matrices but runs nothing, so a shader that compiles here is one the engine may submit.
import { pathToFileURL } from 'node:url';
import { DAWN_TOGGLES } from '../client-sdk/engine/device';

// The `webgpu` package is ESM only; tsc's CommonJS output would turn a plain import() into require().
// eslint-disable-next-line @typescript-eslint/no-implied-eval
const importEsm = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<{ create: (f: string[]) => GPU; globals: object }>;
// Dawn tears its instance down under live devices if the GPU object is collected (bench/webgpu-crash-repro.js).
const KEEP: GPU[] = [];

/** A device on Dawn's null backend with the features the engine's tc path asks for. */
export async function nullDevice(): Promise<GPUDevice> {
  const mod = await importEsm(pathToFileURL(require.resolve('webgpu')).href);
  Object.assign(globalThis, mod.globals);
  const gpu = mod.create(['backend=null', ...DAWN_TOGGLES]);
  KEEP.push(gpu);
  const ad = await gpu.requestAdapter();
  if (!ad) throw new Error('no null adapter');
  return ad.requestDevice({ requiredFeatures: ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] as GPUFeatureName[] });
}

/** Dawn's compile errors for `code`, as "line:col message"; [] when it compiles. */
export async function wgslErrors(dev: GPUDevice, code: string): Promise<string[]> {
  const info = await dev.createShaderModule({ code }).getCompilationInfo();
  return info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
}
