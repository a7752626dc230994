// FedAvg's close with the global placed in the sum's memory when the sum is made and the next adapter written into
// shared buffers made with it (coordinator/strategy/fold-close.ts): the one-thread bits, for 1-3 helpers; those
// buffers are the adapter's own (one SharedArrayBuffer per tensor, of its size) and nothing writes them once it is
// returned (a second close of the same sum, the next round begun from that adapter, a failed close after it); a
// close of another global than the placed one reads that global; a helper that fails during the close leaves
// FedAvg's one-thread close, the same bits, with nothing shared handed out.
import { FedAvg } from '../coordinator/strategy/fedavg';
import { closeGlobals, closeParts } from '../coordinator/strategy/fold-close';
import { wasmApi } from '../coordinator/strategy/fold-kernel';
import { helpers, type SumMessage } from '../coordinator/strategy/fold-pool';
import { FOLD_THREADS_MIN_PARAMS, setFoldThreads, startFoldThreads } from '../coordinator/strategy/fold-threads';
import type { Aggregation } from '../coordinator/strategy/strategy';
import type { NamedTensor, TensorList } from '../proto/tensors';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** Seeded float32 values of magnitude below `scale`. */
function values(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2 * scale;
  });
}

const SIZES = [1001, FOLD_THREADS_MIN_PARAMS];
const P = SIZES[0] + SIZES[1];
const tensor = (name: string, data: Float32Array): NamedTensor => ({ name, dtype: 'float32', shape: [data.length], data });
const globalOf = (seed: number): NamedTensor[] => SIZES.map((n, i) => tensor(`t${i}`, values(n, seed + i, 0.1)));
const hex = (ts: TensorList): string[] => ts.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('hex'));
const shared = (ts: TensorList): boolean[] => ts.map((t) => t.data.buffer instanceof SharedArrayBuffer);

/** Round r's sum over `global`: three updates (seeded by r) folded as the upload path folds them. */
function folded(s: FedAvg, global: TensorList, r: number): Aggregation {
  const agg = s.begin(global);
  for (const i of [1, 2, 3]) {
    const f = agg.open(`c${i}`, 10 * i + r);
    f.push(new Uint8Array(values(P, 100 * r + i, 0.01).buffer));
    f.finish();
    f.commit();
  }
  return agg;
}

/** Round r folded, then closed. */
function round(s: FedAvg, global: TensorList, r: number, beforeClose?: () => void): NamedTensor[] {
  const agg = folded(s, global, r);
  beforeClose?.();
  return s.aggregate(global, agg.sum());
}

describe('FedAvg close: the global placed in the sum, the next adapter in shared buffers', function () {
  this.timeout(60_000);
  before(async () => {
    expect(await startFoldThreads(3)).to.equal(3);
  });
  after(() => setFoldThreads(undefined));

  /** Two rounds from `global` on the calling thread alone: the bits every thread count must give. */
  const oneThread = (global: TensorList): [string[], string[]] => {
    setFoldThreads(0);
    const s = new FedAvg();
    const a1 = round(s, global, 1);
    return [hex(a1), hex(round(s, a1, 2))];
  };

  it('the one-thread bits over 1-3 helpers; the adapter owns its shared buffers and nothing writes them afterwards', () => {
    const global = globalOf(7);
    const [want1, want2] = oneThread(global);
    for (const threads of [1, 2, 3]) {
      setFoldThreads(threads);
      const s = new FedAvg();
      const before = closeParts.helpers + closeParts.caller;
      const placed = closeGlobals.placed;
      const a1 = round(s, global, 1);
      expect(closeParts.helpers + closeParts.caller - before, `threads ${threads}: parts posted`).to.equal(threads);
      expect(hex(a1), `threads ${threads}`).to.deep.equal(want1);
      // One SharedArrayBuffer per tensor, exactly its size: the adapter holds no part of the sum's memory.
      expect(shared(a1)).to.deep.equal([true, true]);
      a1.forEach((t, i) => expect([t.data.byteOffset, t.data.buffer.byteLength]).to.deep.equal([0, 4 * SIZES[i]]));
      // The next round begun from it (its global over shared buffers), closed on the helpers: the one-thread chain,
      // and the adapter it started from unchanged (the new sum's memory and buffers are its own).
      const a2 = round(s, a1, 2);
      expect(hex(a2), `threads ${threads}, round 2`).to.deep.equal(want2);
      expect(shared(a2)).to.deep.equal([true, true]);
      a2.forEach((t, i) => expect(t.data.buffer).not.to.equal(a1[i].data.buffer));
      expect(hex(a1), `threads ${threads}: round 1's adapter after round 2`).to.deep.equal(want1);
      expect(closeGlobals.placed - placed, 'both closes found their global placed').to.equal(2);
    }
  });

  it('a second close of the same sum: new unshared buffers, the same bits; the first adapter unchanged', () => {
    const global = globalOf(11);
    const want = oneThread(global)[0];
    setFoldThreads(2);
    const s = new FedAvg();
    const agg = folded(s, global, 1);
    const first = s.aggregate(global, agg.sum());
    const firstBuffers = first.map((t) => t.data.buffer);
    // The same sum closed again over another denominator (a sampled round's), then over this one again.
    s.aggregate(global, { ...agg.sum(), totalWeight: agg.sum().totalWeight + 5 });
    const again = s.aggregate(global, agg.sum());
    expect(shared(again)).to.deep.equal([false, false]);
    expect(hex(again)).to.deep.equal(want);
    expect(hex(first)).to.deep.equal(want);
    first.forEach((t, i) => expect(t.data.buffer).to.equal(firstBuffers[i]));
  });

  it('a close of another global than the one the sum was made with reads that global', () => {
    const made = globalOf(21);
    const other = globalOf(22);
    const [want] = oneThread(other);
    setFoldThreads(3);
    const agg = folded(new FedAvg(), made, 1);
    // The same layout, other tensors and values: copied in at the close, not the values placed at begin.
    const copied = closeGlobals.copiedIn;
    expect(hex(new FedAvg().aggregate(other, agg.sum()))).to.deep.equal(want);
    expect(closeGlobals.copiedIn - copied).to.equal(1);
  });

  it('a helper that fails during the close: the one-thread close, the same bits, nothing shared handed out', () => {
    const global = globalOf(31);
    const [want] = oneThread(global);
    setFoldThreads(3);
    // Each helper is sent another sum's memory behind the caller's back (as a bug or a lost message would leave it):
    // the close part it claims then answers -1, the caller's wait throws, and FedAvg closes on its own thread. A part
    // the caller takes back before a helper claims it is closed by the caller; tried until a helper failed.
    const memory = new wasmApi!.Memory({ initial: 1, maximum: 1, shared: true });
    const stray: SumMessage = { op: 'sum', id: -31, memory, layout: undefined };
    let fellBack = 0;
    for (let attempt = 0; attempt < 30 && fellBack === 0; attempt++) {
      const s = new FedAvg();
      const a = round(s, global, 1, () => {
        for (const h of helpers.slice(0, 3)) h.port.postMessage(stray);
      });
      expect(hex(a), `attempt ${attempt}`).to.deep.equal(want);
      if (shared(a).every((x) => !x)) fellBack++;
      else expect(shared(a)).to.deep.equal([true, true]);
    }
    expect(fellBack, 'a close fell back to one thread').to.equal(1);
    // The next sum closes on the helpers again (each is sent that sum's memory first).
    const next = round(new FedAvg(), global, 1);
    expect(hex(next)).to.deep.equal(want);
    expect(shared(next)).to.deep.equal([true, true]);
  });
});
