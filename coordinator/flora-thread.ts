// The worker thread of a 'flora' round's close (flora-close.ts starts one per close): it receives the base version
// piece by piece (each tensor's pieces in order, the first at offset 0) and the sites' factors (their buffers moved here), runs flora-next.ts's nextVersion, the very
// code the calling thread would run, and posts the next version back with its buffers moved. An error is posted as
// a message; anything that kills the thread instead is seen by flora-close.ts as the thread's exit or error.
import { parentPort } from 'node:worker_threads';
import { numel, type NamedTensor } from '../proto/tensors';
import { nextVersion, type SiteFactors } from './flora-next';
import type { FromFloraThread, ToFloraThread } from './flora-close';

const port = parentPort!;
const base: NamedTensor[] = [];
const sites: SiteFactors[] = [];

port.on('message', (m: ToFloraThread) => {
  if (m.op === 'base') {
    if (m.offset === 0) base.push({ name: m.name, dtype: 'float32', shape: m.shape, data: new Float32Array(numel(m.shape)) });
    base[base.length - 1].data.set(m.data, m.offset);
  } else if (m.op === 'site') sites.push({ clientId: m.clientId, numExamples: m.numExamples, values: m.values });
  else {
    let out: FromFloraThread;
    try {
      const layout = m.layout.map((t) => ({ name: t.name, dtype: 'float32' as const, shape: t.shape, data: new Float32Array(t.size) }));
      const next = nextVersion(base, { layout, sites, ranks: new Map(m.ranks), totalWeight: m.totalWeight });
      out = { tensors: next.map((t) => ({ name: t.name, shape: [...t.shape], data: t.data })) };
    } catch (e) {
      out = { error: e instanceof Error ? e.message : String(e) };
    }
    port.postMessage(out, 'tensors' in out ? [...new Set(out.tensors.map((t) => t.data.buffer as ArrayBuffer))] : []);
    port.close(); // one close per thread: nothing more will come
  }
});
