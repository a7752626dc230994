/// <reference types="@webgpu/types" />
// What the host writes into one of the engine's buffers while `run` runs: every queue.writeBuffer to the buffer of
// that label, as [byte offset, bytes]. How the FLoRA tests (engine-flora.test.ts on Dawn's null backend,
// gpu-engine-flora.ts on a GPU) show that putting W0 back rewrites the merged modules of `w` and nothing else.
import type { ModelLayout } from '../client-sdk/engine/layout';
import type { LlamaModelLayout } from '../client-sdk/engine/layout-llama';
import { projectionAt } from '../client-sdk/engine/weights';

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

/** The element ranges [from, to) that writes of `bytes` per element cover, merged and sorted. */
export function covered(writes: readonly (readonly [number, number])[], bytes: number): [number, number][] {
  const r = writes.map(([at, len]) => [at / bytes, (at + len) / bytes] as [number, number]).sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [a, b] of r) {
    const last = out[out.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/**
 * The element ranges of `w` the modules `paths` occupy, merged and sorted; on f16 (`half`) widened to whole 4-byte
 * words (writeBuffer writes no less), so a module with an odd offset or end takes one neighbouring element along.
 */
export function regions(layout: ModelLayout | LlamaModelLayout, paths: readonly string[], half: boolean): [number, number][] {
  return covered(
    paths.map((p) => {
      const P = projectionAt(layout, p);
      const end = P.w + P.inF * P.outF;
      const [from, to] = half ? [P.w - (P.w & 1), end + (end & 1)] : [P.w, end];
      return [from, to - from];
    }),
    1,
  );
}
