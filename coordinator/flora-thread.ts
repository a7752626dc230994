// A worker thread of a 'flora' round's close (flora-close.ts starts one per share of the modules, flora-shares.ts):
// it receives its share's base tensors piece by piece (each tensor's pieces in order, the first at offset 0) and
// the sites' factors for its modules (their buffers moved here); asked for its facts, it answers flora-next.ts's
// shareFacts; sent the close's decisions, it answers closeShare's tensors (their buffers moved back): the very code
// the calling thread runs. An error is posted as a message; anything that kills the thread instead is seen by
// flora-close.ts as the thread's exit or error. It ends when flora-close.ts ends it.
import { parentPort } from 'node:worker_threads';
import { numel, type NamedTensor } from '../proto/tensors';
import { closeShare, shareFacts, type ShareInput, type SiteFactors } from './flora-next';
import type { FromFloraThread, ToFloraThread } from './flora-close';

const port = parentPort!;
const base: NamedTensor[] = [];
const sites: SiteFactors[] = [];
let input: ShareInput | undefined;

/** The thread's answer to `m`: what it asks, or why there is none. */
function answer(m: Extract<ToFloraThread, { op: 'facts' | 'close' }>): FromFloraThread {
  try {
    if (m.op === 'facts') {
      const layout = m.layout.map((t) => ({ name: t.name, dtype: 'float32' as const, shape: t.shape, data: new Float32Array(t.size) }));
      input = { layout, sites };
      return { facts: shareFacts(base, input, m.declared) };
    }
    if (!input) throw new Error('the close came before its facts');
    const next = closeShare(base, { ...input, totalWeight: m.totalWeight }, m.decisions);
    return { tensors: next.tensors.map((t) => ({ name: t.name, shape: [...t.shape], data: t.data })), rank: next.rank };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}

port.on('message', (m: ToFloraThread) => {
  if (m.op === 'base') {
    if (m.offset === 0) base.push({ name: m.name, dtype: 'float32', shape: m.shape, data: new Float32Array(numel(m.shape)) });
    base[base.length - 1].data.set(m.data, m.offset);
  } else if (m.op === 'site') sites.push({ clientId: m.clientId, numExamples: m.numExamples, values: m.values });
  else {
    const out = answer(m);
    port.postMessage(out, 'tensors' in out ? [...new Set(out.tensors.map((t) => t.data.buffer as ArrayBuffer))] : []);
  }
});
