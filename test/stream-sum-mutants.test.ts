// Uploads summed as they stream, exactly: WordRuns (proto/word-runs.ts: bytes in any split to staged runs of whole
// words), the plain fold's state machine (coordinator/strategy/stream-fold.ts: StreamedFold, LayoutIndex) and
// SecAgg's masked sum (proto/secagg/masked-sum.ts). Each pass is recorded (start, count, staged values) and each
// refusal compared by whole message. Found missing by mutation testing (bench/MUTATION.md, group stream-sum); the
// sums themselves against references are in stream-fold.test.ts and secagg-masked-stream.test.ts.
import { WordRuns } from '../proto/word-runs';
import { MaskedSum } from '../proto/secagg/masked-sum';
import { LayoutIndex, StreamedFold, type FoldPasses } from '../coordinator/strategy/stream-fold';
import { foldKernel, type FoldKernel } from '../coordinator/strategy/fold-kernel';
import { AdmissionError } from '../coordinator/strategy/strategy';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
/** Bytes 0, 1, 2, … (mod 256). */
const ramp = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => i & 0xff);
const f32 = (xs: number[]): Uint8Array => new Uint8Array(Float32Array.from(xs).buffer);
const u32 = (xs: number[]): Uint8Array => new Uint8Array(Uint32Array.from(xs).buffer);

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  return expect.fail('it did not throw');
}

describe('streamed sums, exactly', () => {
  it('WordRuns: runs of whole words staged in order, a carry across chunks and stages, complete only at the last word', () => {
    const stage = new Uint8Array(8);
    const runs: string[] = [];
    const w = new WordRuns(
      () => stage,
      5,
      () => new RangeError('too many'),
    );
    const run = (start: number, n: number): number => runs.push(`${start}+${n}:${hex(stage.subarray(0, 4 * n))}`);
    const bytes = ramp(20);
    w.feed(bytes.subarray(0, 3), run);
    expect([runs, w.at, w.complete]).to.deep.equal([[], 0, false]);
    // Three carried bytes and five new fill the stage: two words; the other five give one word and one byte over.
    w.feed(bytes.subarray(3, 13), run);
    expect(runs).to.deep.equal(['0+2:0001020304050607', '2+1:08090a0b']);
    expect([w.at, w.complete]).to.deep.equal([3, false]);
    w.feed(bytes.subarray(13, 20), run);
    expect(runs.slice(2)).to.deep.equal(['3+2:0c0d0e0f10111213']);
    expect([w.at, w.complete]).to.deep.equal([5, true]);
    // A byte more is carried (no longer complete); a word more is refused, and nothing is handed on.
    w.feed(Uint8Array.of(1), run);
    expect([w.at, w.complete, runs.length]).to.deep.equal([5, false, 3]);
    expect(thrown(() => w.feed(Uint8Array.of(2, 3, 4), run)).message).to.equal('too many');
    expect(runs.length).to.equal(3);
    // Whole words with nothing carried, short of the total: not complete.
    const v = new WordRuns(
      () => stage,
      3,
      () => new RangeError('too many'),
    );
    v.feed(ramp(8), () => undefined);
    expect([v.at, v.complete]).to.deep.equal([2, false]);
    expect(thrown(() => v.feed(ramp(8), () => undefined)).message).to.equal('too many');
  });

  it('LayoutIndex: every value to its tensor and index (an empty tensor between); a range error names both', () => {
    const t = (name: string, n: number) => ({ name, dtype: 'float32' as const, shape: [n], data: new Float32Array(n) });
    const idx = new LayoutIndex([t('a', 3), t('b', 0), t('c', 2), t('d', 4)]);
    expect(idx.total).to.equal(9);
    expect(Array.from({ length: 9 }, (_, i) => idx.locate(i)).map((l) => `${l.name}${l.index}`)).to.deep.equal([
      'a0',
      'a1',
      'a2',
      'c0',
      'c1',
      'd0',
      'd1',
      'd2',
      'd3',
    ]);
    const e = idx.rangeError('site-1', 4, 300);
    expect([e.name, e.message]).to.deep.equal(['FixedPointRangeError', 'site-1:c[1] = 300 is outside the fixed-point range (|x| < 128)']);
  });

  /** A strategy's passes that record every call; values above `max` do not pass. */
  function passes(k: FoldKernel, o: { foldsOnPush: boolean; again?: boolean; replay?: boolean; max?: number }) {
    const calls: string[] = [];
    const staged = (n: number): string => (n <= 4 ? `:${Array.from(k.staged.subarray(0, n)).join(',')}` : '');
    const p: FoldPasses = {
      foldsOnPush: o.foldsOnPush,
      push(start, n) {
        calls.push(`push ${start}+${n}${staged(n)}`);
        const bad = Array.from(k.staged.subarray(0, n)).findIndex((x) => x > (o.max ?? Infinity));
        return bad < 0 ? n : bad;
      },
      refuse: (i, value) => new Error(`refused value ${i} = ${value}`),
      replay:
        o.replay === false
          ? undefined
          : (start, n) => {
              calls.push(`replay ${start}+${n}${staged(n)}`);
              return n;
            },
      takeBack: (start, n) => void calls.push(`takeBack ${start}+${n}`),
      finish: () => (calls.push('finish'), o.again ?? false),
      commit: () => void calls.push('commit'),
      abandon: () => void calls.push('abandon'),
      undone: () => void calls.push('undone'),
    };
    return { p, calls };
  }

  it('StreamedFold: each call out of turn refused by name; a short update, a long one and a commit before the replay', () => {
    const k = foldKernel(3, false);
    const { p, calls } = passes(k, { foldsOnPush: true });
    const f = new StreamedFold(k, 3, p);
    expect([f.needsReplay, f.needsUndo, f.folded]).to.deep.equal([false, false, 0]);
    expect(thrown(() => f.replay(f32([1]))).message).to.equal('update fold: replay in state open');
    expect(thrown(() => f.commit()).message).to.equal('update fold: commit in state open');
    expect(thrown(() => f.undo(f32([1]))).message).to.equal('update fold: undo in state open');
    expect(thrown(() => f.undone()).message).to.equal('update fold: undone in state open');
    const bytes = f32([1, 2, 3]);
    f.push(bytes.subarray(0, 9));
    const short = thrown(() => f.finish());
    expect([short instanceof AdmissionError, short.message]).to.deep.equal([true, 'the update ends after 2 of its 3 values']);
    f.push(bytes.subarray(9));
    f.finish();
    expect(thrown(() => f.push(f32([4]))).message).to.equal('update fold: push in state finished');
    expect(thrown(() => f.finish()).message).to.equal('update fold: finish in state finished');
    expect(thrown(() => f.replay(bytes)).message).to.equal('update fold: this strategy needs no second pass');
    expect(thrown(() => f.undo(bytes)).message).to.equal('update fold: undo in state finished');
    f.commit();
    expect(thrown(() => f.abandon()).message).to.equal('update fold: a committed update cannot be abandoned');
    expect(calls).to.deep.equal(['push 0+2:1,2', 'push 2+1:3', 'finish', 'commit']);
    expect(f.folded).to.equal(3);
    const long = thrown(() => new StreamedFold(k, 3, passes(k, { foldsOnPush: true }).p).push(f32([1, 2, 3, 4])));
    expect([long instanceof AdmissionError, long.message]).to.deep.equal([true, "the update carries more than the 3 values of the round's layout"]);
    // A strategy that asks for a second pass: commit waits for all of it; one without a replay refuses it.
    const r = passes(k, { foldsOnPush: false, again: true });
    const g = new StreamedFold(k, 3, r.p);
    g.push(bytes);
    g.finish();
    expect([g.needsReplay, g.folded]).to.deep.equal([true, 0]);
    expect(thrown(() => g.commit()).message).to.equal('update fold: committed before its second pass was complete');
    g.replay(bytes.subarray(0, 5));
    expect(thrown(() => g.commit()).message).to.equal('update fold: committed before its second pass was complete');
    g.replay(bytes.subarray(5));
    g.commit();
    expect(r.calls).to.deep.equal(['push 0+3:1,2,3', 'finish', 'replay 0+1:1', 'replay 1+2:2,3', 'commit']);
    expect(g.folded).to.equal(3);
    const h = new StreamedFold(k, 3, passes(k, { foldsOnPush: false, again: true, replay: false }).p);
    h.push(bytes);
    h.finish();
    expect(thrown(() => h.replay(bytes)).message).to.equal('update fold: this strategy needs no second pass');
  });

  it('StreamedFold: abandoned, it takes back exactly what it folded (a refused value stops the fold), once; released only after', () => {
    const k = foldKernel(3, false);
    const { p, calls } = passes(k, { foldsOnPush: true, max: 50 });
    const f = new StreamedFold(k, 3, p);
    const bytes = f32([1, 2, 99]);
    expect(thrown(() => f.push(bytes)).message).to.equal('refused value 2 = 99');
    expect(f.folded).to.equal(2);
    f.abandon();
    f.abandon();
    expect(f.needsUndo).to.equal(true);
    expect(thrown(() => f.undone()).message).to.equal('update fold: released before what it folded was taken back');
    expect(f.undo(bytes.subarray(0, 5))).to.equal(false);
    expect(f.undo(bytes.subarray(5, 8))).to.equal(true);
    // Asked again with what follows (here one value more than the update has): nothing more is read.
    expect(f.undo(f32([7, 7]))).to.equal(true);
    f.undone();
    f.undone();
    f.abandon();
    expect(f.needsUndo).to.equal(false);
    expect(calls).to.deep.equal(['push 0+3:1,2,99', 'abandon', 'takeBack 0+1', 'takeBack 1+1', 'undone']);
    // Nothing folded: no take-back needed, released at once.
    const q = passes(k, { foldsOnPush: true });
    const g = new StreamedFold(k, 3, q.p);
    g.push(bytes.subarray(0, 3));
    g.abandon();
    expect(g.needsUndo).to.equal(false);
    g.undone();
    expect(q.calls).to.deep.equal(['abandon', 'undone']);
    // A first pass that only checks folds nothing, so an abandoned update has nothing to take back.
    const c = new StreamedFold(k, 3, passes(k, { foldsOnPush: false, again: true }).p);
    c.push(bytes.subarray(0, 8));
    c.abandon();
    expect([c.folded, c.needsUndo]).to.deep.equal([0, false]);
  });

  it('StreamedFold: taking back a long update reads it whole but takes back only the values folded (one stage and less)', () => {
    const total = 300_000; // more than the kernel's stage (262,144 values): the bytes come in two runs
    const k = foldKernel(total, false);
    const bytes = new Uint8Array(4 * total);
    for (const folded of [1000, 262_144]) {
      const { p, calls } = passes(k, { foldsOnPush: true });
      const f = new StreamedFold(k, total, p);
      f.push(bytes.subarray(0, 4 * folded));
      f.abandon();
      expect(f.undo(bytes)).to.equal(true);
      expect(calls.slice(1)).to.deep.equal(['abandon', `takeBack 0+${folded}`]);
    }
  });

  const words = (sum: Uint32Array): number[] => Array.from(sum);

  it('MaskedFeed: each call out of turn refused by name; settled once accepted or taken back; abandoned twice is once', () => {
    const sum = new MaskedSum(3);
    const f = sum.feed();
    expect(f.settled).to.equal(false);
    expect(thrown(() => f.accept()).message).to.equal('masked feed: accepted after 0 of 3 values');
    expect(thrown(() => f.undo(u32([1]))).message).to.equal('masked feed: undo in state open');
    f.push(u32([1, 2, 3]));
    expect(f.complete).to.equal(true);
    f.accept();
    expect(f.settled).to.equal(true);
    expect(thrown(() => f.push(u32([1]))).message).to.equal('masked feed: push in state accepted');
    expect(thrown(() => f.accept()).message).to.equal('masked feed: accept in state accepted');
    expect(thrown(() => f.abandon()).message).to.equal('masked feed: abandon in state accepted');
    expect(thrown(() => f.undo(u32([1]))).message).to.equal('masked feed: undo in state accepted');
    const long = thrown(() => sum.feed().push(u32([1, 2, 3, 4])));
    expect([long.name, long.message]).to.deep.equal(['RangeError', "masked input carries more than the round's 3 values"]);
    // Nothing added: abandoned is already taken back.
    const none = sum.feed();
    none.push(Uint8Array.of(9, 9));
    none.abandon();
    expect([none.settled, none.undo(new Uint8Array(0))]).to.deep.equal([true, true]);
    none.abandon();
    // One word and a byte in: taken back from the same bytes in any split, and only then settled.
    const q = sum.feed();
    const qb = u32([5, 6, 7]);
    q.push(qb.subarray(0, 5));
    expect(sum.unsettled).to.equal(1);
    q.abandon();
    q.abandon();
    expect(q.settled).to.equal(false);
    expect(q.undo(qb.subarray(0, 2))).to.equal(false);
    expect([q.settled, sum.unsettled]).to.deep.equal([false, 1]);
    expect(q.undo(qb.subarray(2, 6))).to.equal(true);
    expect([q.settled, sum.unsettled, q.undo(qb)]).to.deep.equal([true, 0, true]);
    const s = sum.take();
    expect(words(s)).to.deep.equal([1, 2, 3]);
    // After the sum was taken, a late feed changes nothing in it and leaves nothing unsettled.
    const late = sum.feed();
    late.push(u32([4, 4, 4]));
    expect([words(s), sum.unsettled]).to.deep.equal([[1, 2, 3], 0]);
  });

  it('MaskedSum: dropped, it forgets the sum and every unsettled feed; later feeds add nothing', () => {
    const sum = new MaskedSum(3);
    sum.feed().push(u32([1, 2]));
    expect(sum.unsettled).to.equal(1);
    sum.drop();
    expect(sum.unsettled).to.equal(0);
    const f = sum.feed();
    f.push(u32([7, 8, 9]));
    f.accept();
    expect([sum.unsettled, words(sum.take())]).to.deep.equal([0, [0, 0, 0]]);
  });

  it('MaskedFeed: taking back a long input (two stages) takes back only the words added', () => {
    const n = 20_000; // the sum stages 16,384 words at a time
    const sum = new MaskedSum(n);
    const y = Uint32Array.from({ length: n }, (_, i) => i * 2654435761);
    const kept = Uint32Array.from({ length: n }, (_, i) => i + 1);
    const a = sum.feed();
    a.push(new Uint8Array(kept.buffer));
    a.accept();
    const b = sum.feed();
    const yb = new Uint8Array(y.buffer);
    b.push(yb.subarray(0, 400));
    b.abandon();
    expect(b.undo(yb)).to.equal(true);
    expect(words(sum.take())).to.deep.equal(Array.from(kept));
  });
});
