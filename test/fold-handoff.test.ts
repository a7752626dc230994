// Chunks handed to fold helpers whole (coordinator/strategy/fold-handoff.ts): the committed sum is the batch FedAvg's,
// bit for bit, for shuffled arrival orders, updates interleaved chunk by chunk and 1-3 helpers; the handed buffers
// moved (detached here, never copied); a refusal names the update's first bad value wherever the helpers found it
// first, and the update comes back out of the sum exactly.
import { FedAvg } from '../coordinator/strategy/fedavg';
import { handed } from '../coordinator/strategy/fold-handoff';
import { FOLD_THREADS_MIN_PARAMS, setFoldThreads, startFoldThreads } from '../coordinator/strategy/fold-threads';
import type { ClientUpdate, UpdateFold } from '../coordinator/strategy/strategy';
import type { NamedTensor, TensorList } from '../proto/tensors';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const N = FOLD_THREADS_MIN_PARAMS + 4_000; // a threaded sum, and regions not a multiple of the chunks
const layout = (): NamedTensor[] => [
  { name: 'a', dtype: 'float32', shape: [N - 1000], data: new Float32Array(N - 1000) },
  { name: 'b', dtype: 'float32', shape: [1000], data: new Float32Array(1000) },
];

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

function update(k: number, global: TensorList): ClientUpdate {
  const r = lcg(k + 7);
  // Ties on the 2^-24 grid mixed in, so rounding is exercised too.
  const delta = global.map((t) => ({
    ...t,
    data: Float32Array.from(t.data, (_, i) => (i % 5 === 0 ? (Math.floor(r() * 2000) - 1000 + 0.5) / 2 ** 24 : (r() - 0.5) * 0.02)),
  }));
  return { clientId: `c${k}`, numExamples: 3 + 11 * k, delta };
}

/** The update's bytes cut in chunks of `size` (a multiple of 4), each in its own buffer, as node:crypto opens them. */
function chunks(u: ClientUpdate, size: number): Uint8Array[] {
  const all = Buffer.concat(u.delta.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)));
  const out: Uint8Array[] = [];
  for (let off = 0; off < all.length; off += size) out.push(new Uint8Array(all.subarray(off, off + size)));
  return out;
}

const bits = (ts: Iterable<ArrayLike<number>>): string => Buffer.concat([...ts].map((t) => Buffer.from(Float64Array.from(t).buffer))).toString('base64');

function shuffle<T>(xs: T[], r: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

describe('fold: chunks handed to helper threads whole', function () {
  this.timeout(120_000);
  before(async () => expect(await startFoldThreads(3)).to.equal(3));
  after(() => setFoldThreads(undefined));
  const global = layout();
  const updates = [0, 1, 2, 3].map((k) => update(k, global));
  /** The batch sum on one thread (admit, add). */
  const batchBits = (us: readonly ClientUpdate[]): string => {
    setFoldThreads(0);
    const a = new FedAvg().begin(global);
    for (const u of us) a.admit(u);
    for (const u of us) a.add(u);
    return bits(a.sum().tensors.values());
  };

  it('any arrival order, updates interleaved chunk by chunk, 1-3 helpers: the batch sum, bit for bit; the buffers moved', () => {
    const want = batchBits(updates);
    const r = lcg(1);
    for (const threads of [1, 2, 3])
      for (const size of [65_536, 4 * 12_345]) {
        setFoldThreads(threads);
        const a = new FedAvg().begin(global);
        const before = handed.runs;
        const folds = new Map<number, UpdateFold>();
        const order = shuffle([0, 1, 2, 3], r);
        const queues = order.map((k) => ({ k, cs: chunks(updates[k], size) }));
        const sent: Uint8Array[] = [];
        // Round-robin over the updates in their shuffled order: several are in flight at once on the helpers.
        while (queues.some((q) => q.cs.length > 0))
          for (const q of queues) {
            const c = q.cs.shift();
            if (!c) continue;
            if (!folds.has(q.k)) folds.set(q.k, a.open(updates[q.k].clientId, updates[q.k].numExamples));
            folds.get(q.k)!.push(c, true);
            sent.push(c);
          }
        for (const f of folds.values()) {
          f.finish();
          f.commit();
        }
        expect(bits(a.sum().tensors.values()), `${threads} helpers, chunks of ${size} bytes, order ${order.join(',')}`).to.equal(want);
        expect(handed.runs - before).to.equal(sent.length);
        expect(sent.every((c) => c.byteLength === 0)).to.equal(true); // moved to the helpers, not copied
      }
  });

  it('bad values in two chunks: the first is named, however the helpers finished; the update comes back out exactly', () => {
    const others = updates.slice(0, 3);
    const want = batchBits(others);
    setFoldThreads(3);
    const poisoned = update(9, global);
    const at1 = 3 * 16_384 + 5; // in the fourth chunk
    const at2 = 16_384 + 100; // in the second chunk: the one to name
    poisoned.delta[0].data[at1] = 200;
    poisoned.delta[0].data[at2] = Number.NaN;
    const a = new FedAvg().begin(global);
    for (const u of others) {
      const f = a.open(u.clientId, u.numExamples);
      for (const c of chunks(u, 65_536)) f.push(c, true);
      f.finish();
      f.commit();
    }
    const f = a.open(poisoned.clientId, poisoned.numExamples);
    let refusal: Error | undefined;
    try {
      for (const c of chunks(poisoned, 65_536)) f.push(c, true);
      f.finish();
    } catch (e) {
      refusal = e as Error;
    }
    expect(refusal?.message).to.equal(`c9:a[${at2}] = NaN is outside the fixed-point range (|x| < 128)`);
    f.abandon();
    // Taken back from the same bytes again (the coordinator reads them back from the spool), in any split.
    for (const c of chunks(poisoned, 4 * 777)) if (f.undo(c)) break;
    f.undone();
    expect(bits(a.sum().tensors.values())).to.equal(want);
  });

  it('an update abandoned with chunks still on the helpers, then chunks folded here after handed ones: exact', () => {
    const want = batchBits([updates[0], updates[2]]);
    setFoldThreads(2);
    const a = new FedAvg().begin(global);
    const f0 = a.open(updates[0].clientId, updates[0].numExamples);
    const f1 = a.open(updates[1].clientId, updates[1].numExamples);
    const c1 = chunks(updates[1], 65_536);
    for (const c of c1.slice(0, 5)) f1.push(c, true); // handed, maybe not folded yet
    f1.abandon();
    for (const c of chunks(updates[1], 65_536)) if (f1.undo(c)) break;
    f1.undone();
    const c0 = chunks(updates[0], 65_536);
    f0.push(c0[0], true);
    f0.push(new Uint8Array(c0[1]), false); // not owned: folded on this thread, after the handed chunk landed
    for (const c of c0.slice(2)) f0.push(c, true);
    f0.finish();
    f0.commit();
    const f2 = a.open(updates[2].clientId, updates[2].numExamples);
    for (const c of chunks(updates[2], 65_536)) f2.push(c, true);
    f2.finish();
    f2.commit();
    expect(bits(a.sum().tensors.values())).to.equal(want);
  });
});
