// Minimal repro of the process crash seen with the npm `webgpu` package (Dawn for Node): SIGSEGV, or glibc's
// "The futex facility returned an unexpected error code", or "terminate called after throwing std::system_error".
// Cause found: the GPU object returned by create() is garbage-collected while a device made from it is still in
// use; Dawn then destroys its instance (and threads) under the live device. Keeping a reference to the GPU
// object for the device's lifetime fixes it (client-sdk/engine/device.ts does).
//   node --expose-gc bench/webgpu-crash-repro.js drop   # usually dies within a few iterations
//   node --expose-gc bench/webgpu-crash-repro.js keep   # completes
const { create, globals } = require('webgpu');
Object.assign(globalThis, globals);
const keep = process.argv[2] === 'keep';
const held = [];
async function openDevice() {
  const gpu = create([]);
  if (keep) held.push(gpu);
  const adapter = await gpu.requestAdapter();
  return adapter.requestDevice();
}
(async () => {
  const dev = await openDevice();
  const buf = dev.createBuffer({ size: 4096, usage: GPUBufferUsage.STORAGE });
  for (let i = 0; i < 30; i++) {
    if (global.gc) global.gc();
    const module = dev.createShaderModule({
      code: `@group(0) @binding(0) var<storage, read_write> b: array<u32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) { b[g.x] = b[g.x] + ${i}u; }`,
    });
    const pipe = dev.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const bg = dev.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] });
    const enc = dev.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipe);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(16);
    pass.end();
    dev.queue.submit([enc.finish()]);
    await dev.queue.onSubmittedWorkDone();
  }
  console.log(`${keep ? 'keep' : 'drop'}: 30 iterations completed`);
  process.exit(0);
})();
