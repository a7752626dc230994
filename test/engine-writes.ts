/// <reference types="@webgpu/types" />
// What the host writes into one of the engine's buffers while `run` runs: every queue.writeBuffer to the buffer of
// that label, as [byte offset, bytes]. How the FLoRA tests (engine-flora.test.ts on Dawn's null backend,
// gpu-engine-flora.ts on a GPU) show that putting W0 back rewrites the merged modules of `w` and nothing else.

/** The writes to the buffer labelled `label` during `run`, in order, as [byte offset, byte length]. */
export async function writesTo(device: GPUDevice, label: string, run: () => unknown): Promise<[number, number][]> {
  const queue = device.queue;
  const writes: [number, number][] = [];
  const own = Object.hasOwn(queue, 'writeBuffer');
  const original = queue.writeBuffer.bind(queue);
  type Data = Parameters<GPUQueue['writeBuffer']>[2];
  queue.writeBuffer = (buffer: GPUBuffer, at: number, data: Data, dataOffset = 0, size?: number): undefined => {
    // dataOffset and size count elements of a typed array, bytes of an ArrayBuffer.
    const d = data as ArrayBufferView | ArrayBufferLike;
    const unit = ArrayBuffer.isView(d) ? ((d as Partial<Uint8Array>).BYTES_PER_ELEMENT ?? 1) : 1;
    if (buffer.label === label) writes.push([at, size !== undefined ? size * unit : d.byteLength - dataOffset * unit]);
    return original(buffer, at, data, dataOffset, size);
  };
  try {
    await run();
  } finally {
    if (own) queue.writeBuffer = original;
    else delete (queue as Partial<GPUQueue>).writeBuffer;
  }
  return writes;
}
