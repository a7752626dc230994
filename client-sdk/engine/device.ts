/// <reference types="@webgpu/types" />
// The engine's own WebGPU device on Dawn (npm `webgpu`), and what it can do. On NVIDIA, Dawn exposes f16 and
// subgroup matrices (tensor cores) only with the toggles below; capabilities decide the engine path at run time
// and FEDTUNE_ENGINE (or the `path` option) overrides it.
import * as fs from 'fs';
import { pathToFileURL } from 'url';
import type { EnginePath } from './program';

export const DAWN_TOGGLES = ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'];

export interface Capabilities {
  readonly adapter: string;
  readonly f16: boolean;
  readonly subgroups: boolean;
  /** An f16 → f32 16×16×16 subgroup-matrix config is offered and the subgroup size is 32. */
  readonly subgroupMatrix: boolean;
  readonly subgroupMinSize: number;
  readonly subgroupMaxSize: number;
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
  readonly maxComputeWorkgroupStorageSize: number;
}

export interface EngineDevice {
  readonly device: GPUDevice;
  readonly caps: Capabilities;
  /** Set once the device is lost; every later call fails with this message. */
  lostReason?: string;
  /**
   * Resolves with lostReason once the device is lost (never rejects). A read-back races it, so a device that dies
   * mid-round fails the round instead of leaving it waiting on a map that will not come.
   */
  readonly lost?: Promise<string>;
  /** The first error that no error scope caught (Dawn's uncapturederror event), one line. */
  uncaptured?: string;
}

interface WebGpuModule {
  create(flags: string[]): GPU;
  globals: Record<string, unknown>;
}
interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

// The GPU (Dawn instance) object must outlive every device made from it: if it is garbage-collected, Dawn tears
// down the instance under live devices and the process dies (SIGSEGV, or glibc's "futex facility returned an
// unexpected error code"). This was the crash seen in the first tensor-core probes.
const KEEP_ALIVE: GPU[] = [];

const importEsm = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<unknown>;

export function parseEnginePath(v: string | undefined): EnginePath | 'off' | undefined {
  if (v === undefined || v === '' || v === 'auto') return undefined;
  if (v === 'tc' || v === 'f16' || v === 'f32' || v === 'off') return v;
  throw new Error(`FEDTUNE_ENGINE='${v}' is not one of auto, tc, f16, f32, off`);
}

/** The fastest path the capabilities allow, unless `force` names one (which must then be possible). */
export function choosePath(caps: Capabilities, force?: EnginePath): EnginePath {
  if (force === 'tc' && !caps.subgroupMatrix) throw new Error(`engine path 'tc' needs f16 subgroup matrices, which ${caps.adapter} does not offer`);
  if (force === 'f16' && !caps.f16) throw new Error(`engine path 'f16' needs shader-f16, which ${caps.adapter} does not offer`);
  if (force) return force;
  return caps.subgroupMatrix ? 'tc' : 'f32';
}

/** Opens a device with every feature the engine can use; undefined (with the reason) when there is no GPU. */
export async function openEngineDevice(
  opts: { readonly timestamps?: boolean; readonly flags?: readonly string[] } = {},
): Promise<EngineDevice | { error: string }> {
  if (process.platform === 'linux' && !['/dev/dri', '/dev/nvidiactl', '/dev/nvidia0'].some((p) => fs.existsSync(p)) && !process.env.FEDTUNE_ENGINE_SOFTWARE) {
    return { error: 'no GPU device nodes (/dev/dri, /dev/nvidia*)' };
  }
  const mod = (await importEsm(pathToFileURL(require.resolve('webgpu')).href)) as WebGpuModule;
  Object.assign(globalThis, mod.globals);
  const gpu = mod.create([...DAWN_TOGGLES, ...(opts.flags ?? [])]);
  KEEP_ALIVE.push(gpu);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return { error: 'no WebGPU adapter (no GPU, or no Vulkan driver)' };
  const info = (adapter as unknown as { info: GPUAdapterInfo }).info as GPUAdapterInfo & {
    subgroupMatrixConfigs?: SubgroupMatrixConfig[];
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
  };
  const has = (f: string): boolean => adapter.features.has(f);
  const sgMin = info.subgroupMinSize ?? 0;
  const sgMax = info.subgroupMaxSize ?? 0;
  const tcConfig = (info.subgroupMatrixConfigs ?? []).some(
    (c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && c.M === 16 && c.N === 16 && c.K === 16,
  );
  const caps: Capabilities = {
    adapter: [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' '),
    f16: has('shader-f16'),
    subgroups: has('subgroups'),
    subgroupMatrix: has('shader-f16') && has('chromium-experimental-subgroup-matrix') && tcConfig && sgMin === 32 && sgMax === 32,
    subgroupMinSize: sgMin,
    subgroupMaxSize: sgMax,
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
    maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
  };
  const features: GPUFeatureName[] = [];
  if (caps.f16) features.push('shader-f16');
  if (caps.subgroups) features.push('subgroups' as GPUFeatureName);
  if (caps.subgroupMatrix) features.push('chromium-experimental-subgroup-matrix' as GPUFeatureName);
  // Benchmarks only (bench/engine-profile.ts): per-dispatch GPU time.
  if (opts.timestamps && has('timestamp-query')) features.push('timestamp-query');
  const device = await adapter.requestDevice({
    requiredFeatures: features,
    requiredLimits: {
      maxStorageBufferBindingSize: caps.maxStorageBufferBindingSize,
      maxBufferSize: caps.maxBufferSize,
      maxStorageBuffersPerShaderStage: adapter.limits.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupStorageSize: caps.maxComputeWorkgroupStorageSize,
    },
  });
  const ed: EngineDevice = {
    device,
    caps,
    lost: device.lost.then((i) => {
      ed.lostReason = `GPU device lost (${i.reason}): ${i.message}`;
      return ed.lostReason;
    }),
  };
  // Checked by the trainer after each round (its own error scopes catch what it issues; this catches the rest).
  device.onuncapturederror = (ev: GPUUncapturedErrorEvent): void => {
    ed.uncaptured ??= ev.error.message.split('\n')[0];
  };
  return ed;
}
