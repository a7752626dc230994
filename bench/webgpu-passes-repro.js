// Does the number of passes (or dispatches) in one command buffer crash Dawn for Node, once the known cause is
// ruled out? The first tensor-core probes died (SIGSEGV, "futex facility returned an unexpected error code",
// "terminate called after throwing std::system_error") with 20 passes per command buffer and not with 3;
// webgpu-crash-repro.js showed the cause it found: the GPU object collected under a live device. This script holds
// the GPU object (as client-sdk/engine/device.ts does) and varies only what remained suspect: passes per command
// buffer, dispatches per pass (the engine records ~480 in one pass), subgroup-matrix kernels, and exiting the
// process while work is in flight. `drop-*` leaves the GPU object to the collector, as the control that crashes.
// Not run in CI. On the GPU machine (one call, ~1 min):
//   node bench/webgpu-passes-repro.js all [--tc] [--size 1024]     # one child per case; prints exit code/signal
//   node --expose-gc bench/webgpu-passes-repro.js keep-passes-20 [--tc] [--size 1024]   # one case
// Every case should print "ok"; a case that dies shows its signal (SIGSEGV) or exit code (134: abort, 139: segv).
'use strict';
const { spawnSync } = require('node:child_process');
const { create, globals } = require('webgpu');
Object.assign(globalThis, globals);

const CASES = ['keep-passes-3', 'keep-passes-20', 'keep-passes-200', 'keep-dispatches-500', 'keep-exit-in-flight', 'drop-passes-20'];
const args = process.argv.slice(2);
const flag = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const tc = args.includes('--tc');
const size = Number(flag('--size', '512'));
const submits = Number(flag('--submits', '20'));

function driver() {
  const extra = args.slice(1);
  for (const c of CASES) {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['--expose-gc', process.argv[1], c, ...extra], { encoding: 'utf8', timeout: 300_000 });
    const lines = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l && !l.startsWith('Warning:'));
    const end = r.signal ? `signal ${r.signal}` : `exit ${r.status}`;
    console.log(`${c}${tc ? ' (tc)' : ''} size ${size}: ${end}, ${Date.now() - t0} ms: ${lines.slice(-1)[0] ?? ''}`);
  }
}

// f32: one thread per output element. tc: one 32-thread subgroup per 16×16 tile on subgroup matrices (f16 → f32).
function kernel() {
  if (tc)
    return `enable f16;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read> B: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@compute @workgroup_size(32, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u) {
  let m0 = wg.y * 16u;
  let n0 = wg.x * 16u;
  var acc: subgroup_matrix_result<f32, 16, 16>;
  for (var k = 0u; k < ${size}u; k += 16u) {
    let a = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&A, m0 * ${size}u + k, false, ${size}u);
    let b = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&B, k * ${size}u + n0, false, ${size}u);
    acc = subgroupMatrixMultiplyAccumulate(a, b, acc);
  }
  subgroupMatrixStore(&C, m0 * ${size}u + n0, acc, false, ${size}u);
}`;
  return `@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) g: vec3u) {
  var acc = 0.0;
  for (var k = 0u; k < ${size}u; k++) { acc += A[g.y * ${size}u + k] * B[k * ${size}u + g.x]; }
  C[g.y * ${size}u + g.x] = acc;
}`;
}

// The GPU object is created here and, for drop-*, left unreachable once this returns (as in webgpu-crash-repro.js).
const held = [];
async function openDevice(keep) {
  const gpu = create(['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia']);
  if (keep) held.push(gpu);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no WebGPU adapter');
  const features = tc ? ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] : [];
  for (const f of features) if (!adapter.features.has(f)) throw new Error(`the adapter lacks ${f} (run without --tc)`);
  return adapter.requestDevice({ requiredFeatures: features });
}

async function one(c) {
  const device = await openDevice(c.startsWith('keep'));
  const lost = device.lost.then((i) => console.log(`device lost (${i.reason}): ${i.message}`));
  device.onuncapturederror = (e) => console.log(`uncaptured: ${e.error.message.split('\n')[0]}`);
  const bytes = size * size * (tc ? 2 : 4);
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
  const [A, B] = [device.createBuffer({ size: bytes, usage }), device.createBuffer({ size: bytes, usage })];
  const C = device.createBuffer({ size: size * size * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const module = device.createShaderModule({ code: kernel() });
  const pipe = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const bg = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [A, B, C].map((buffer, binding) => ({ binding, resource: { buffer } })) });
  const grid = [size / 16, size / 16]; // a 16×16 tile per workgroup on both kernels
  const m = /-(passes|dispatches)-(\d+)$/.exec(c);
  const passes = m && m[1] === 'passes' ? Number(m[2]) : c.endsWith('exit-in-flight') ? 20 : 1;
  const perPass = m && m[1] === 'dispatches' ? Number(m[2]) : 1;
  const t0 = Date.now();
  for (let s = 0; s < submits; s++) {
    if (global.gc) global.gc();
    const enc = device.createCommandEncoder();
    for (let p = 0; p < passes; p++) {
      const pass = enc.beginComputePass();
      pass.setPipeline(pipe);
      pass.setBindGroup(0, bg);
      for (let d = 0; d < perPass; d++) pass.dispatchWorkgroups(grid[0], grid[1]);
      pass.end();
    }
    device.queue.submit([enc.finish()]);
    if (c.endsWith('exit-in-flight')) {
      console.log('ok: exiting with work in flight');
      process.exit(0);
    }
    await Promise.race([device.queue.onSubmittedWorkDone(), lost]);
  }
  console.log(`ok: ${submits} submits of ${passes} pass(es) × ${perPass} dispatch(es) in ${Date.now() - t0} ms`);
  process.exit(0);
}

if (args[0] === 'all') driver();
else if (CASES.includes(args[0]))
  one(args[0]).catch((e) => {
    console.log(`error: ${e.message}`);
    process.exit(1);
  });
else {
  console.error(`usage: webgpu-passes-repro.js all|${CASES.join('|')} [--tc] [--size N] [--submits N]`);
  process.exit(2);
}
