// Picks the fastest TensorFlow.js backend that actually loads on this machine:
//   tfjs-node-gpu ("tensorflow") → WebGPU through Dawn for Node ("webgpu") → WebAssembly ("wasm") → pure JS ("cpu").
// Optional packages are required lazily inside try blocks so this module loads everywhere, including where
// tfjs-node-gpu failed to install (it downloads libtensorflow at install time) or no GPU is present.
import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'fs';
import * as path from 'path';
import { pathToFileURL } from 'url';

export type BackendName = 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
export const BACKEND_ORDER: readonly BackendName[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

export interface SelectBackendOptions {
  /** Use exactly this backend or throw; FEDTUNE_BACKEND in the environment does the same. */
  readonly force?: BackendName;
}

let selected: BackendName | undefined;
// Calls are serialised so that concurrent callers share one initialisation.
let chain: Promise<unknown> = Promise.resolve();

/**
 * Selects and initialises a backend and returns its name. Idempotent: later calls return the backend already
 * chosen, unless they force a different one (then that one is loaded or an Error says why not).
 */
export function selectBackend(opts: SelectBackendOptions = {}): Promise<BackendName> {
  const run = chain.then(async () => {
    const force = opts.force ?? parseEnvBackend(process.env.FEDTUNE_BACKEND);
    if (selected !== undefined && (force === undefined || force === selected)) return selected;
    selected = await choose(force);
    return selected;
  });
  chain = run.catch(() => undefined);
  return run;
}

/** The backend chosen by selectBackend, if it has run. */
export function selectedBackend(): BackendName | undefined {
  return selected;
}

async function choose(force: BackendName | undefined): Promise<BackendName> {
  if (force !== undefined) {
    const why = await tryBackend(force);
    if (why !== undefined) throw new Error(`backend '${force}' was forced but cannot be used: ${why}`);
    return force;
  }
  const reasons: string[] = [];
  for (const name of BACKEND_ORDER) {
    const why = await tryBackend(name);
    if (why === undefined) return name;
    reasons.push(`${name}: ${why}`);
  }
  throw new Error(`no TensorFlow.js backend could be initialised (${reasons.join('; ')})`);
}

function parseEnvBackend(v: string | undefined): BackendName | undefined {
  if (v === undefined || v === '' || v === 'auto') return undefined;
  if ((BACKEND_ORDER as readonly string[]).includes(v)) return v as BackendName;
  throw new Error(`FEDTUNE_BACKEND='${v}' is not one of ${BACKEND_ORDER.join(', ')}, auto`);
}

/** Loads and activates one backend; returns undefined on success, otherwise the reason it is unusable. */
async function tryBackend(name: BackendName): Promise<string | undefined> {
  // Read the engine's field rather than tf.getBackend(), which would initialise some other backend.
  if (tf.engine().backendName === name) return undefined;
  try {
    switch (name) {
      case 'tensorflow':
        // Registers the 'tensorflow' backend on the shared tfjs-core engine (same version, deduplicated).
        require('@tensorflow/tfjs-node-gpu');
        break;
      case 'webgpu': {
        const why = await installNavigatorGpu();
        if (why !== undefined) return why;
        require('@tensorflow/tfjs-backend-webgpu');
        // Submit command buffers in batches of 100 kernels instead of tfjs's default: a LoRA step issues
        // thousands of small kernels, and this measured 9-13% faster on an H100 (bench/RESULTS.md).
        tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', 100);
        break;
      }
      case 'wasm':
        loadWasm();
        break;
      case 'cpu':
        require('@tensorflow/tfjs-backend-cpu');
        break;
    }
  } catch (e) {
    return firstLine(e);
  }
  if (!tf.engine().registryFactory[name]) return 'package loaded but did not register the backend';
  try {
    const ok = await tf.setBackend(name);
    if (!ok) return 'backend failed to initialise';
    await tf.ready();
  } catch (e) {
    return firstLine(e);
  }
  return undefined;
}

function loadWasm(): void {
  // The Node build locates its .wasm files next to itself; point at the package's dist/ explicitly so that
  // bundlers or a relocated node_modules do not break that guess.
  const wasm = require('@tensorflow/tfjs-backend-wasm') as { setWasmPaths(prefix: string): void };
  const dist = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
  wasm.setWasmPaths(dist + path.sep);
}

interface GpuLike {
  requestAdapter(opts?: unknown): Promise<unknown>;
}
interface WebGpuModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}

// The npm `webgpu` package (Dawn) is an ES module; a TypeScript `import()` would compile to require() under
// CommonJS, which Node 20 refuses for ESM, so the dynamic import is built at run time.
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- a constant body, not input: see above
const importEsm = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<unknown>;

/** Puts Dawn's navigator.gpu on globalThis, but only if it offers an adapter (a GPU with Vulkan/Metal/D3D). */
async function installNavigatorGpu(): Promise<string | undefined> {
  const g = globalThis as { navigator?: { gpu?: GpuLike } };
  if (g.navigator?.gpu) {
    return (await g.navigator.gpu.requestAdapter()) ? undefined : 'navigator.gpu offers no adapter';
  }
  // On Linux a GPU shows up as device nodes; without any, skip Dawn (it would only print Vulkan warnings).
  if (process.platform === 'linux' && !['/dev/dri', '/dev/nvidiactl', '/dev/nvidia0'].some((p) => fs.existsSync(p))) {
    return 'no GPU device nodes (/dev/dri, /dev/nvidia*)';
  }
  const mod = (await importEsm(pathToFileURL(require.resolve('webgpu')).href)) as WebGpuModule;
  const gpu = mod.create([]);
  const adapter = await gpu.requestAdapter();
  if (!adapter) return 'no WebGPU adapter (no GPU, or no Vulkan driver)';
  Object.assign(globalThis, mod.globals);
  // Node ≥21 has a read-only navigator getter; define a property rather than assigning.
  const nav = { ...(g.navigator ?? {}), gpu };
  Object.defineProperty(globalThis, 'navigator', { value: nav, configurable: true, writable: true });
  return undefined;
}

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0];
}
