// A 'flora' round's close shared among worker threads by module (coordinator/flora-shares.ts, flora-close.ts): 1, 2,
// 3 threads (and more than the modules: one per module) give the very bytes the calling thread's close gives,
// below the dense rank K, at K, past K and over a base already in dense form, with the updates added in either
// order; the decisions that span every module (a site's declared rank contradicted in one module only; a base whose
// product is zero in all modules but one) hold across threads. The modules are shared by cost, each thread is sent
// its own modules only (together one copy of the base and of the factors), and failures and a stop with several
// threads reject the close naming the cause.
import { FloraStacking, declareFloraRank } from '../coordinator/flora-stack';
import { nextVersionOffThread } from '../coordinator/flora-close';
import { nextVersion, type StackInput } from '../coordinator/flora-next';
import { planShares, shareOf, siteShare } from '../coordinator/flora-shares';
import { compactComponents, loraModules, zeroAdapter } from '../proto/model/lora-stack';
import { Prng } from '../proto/prng';
import { sortByName, type NamedTensor, type TensorList } from '../proto/tensors';
import * as path from 'node:path';
import { bits } from './flora-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const DIES = path.join(__dirname, 'fixtures', 'flora-thread-dies.js');
const hex = (ts: TensorList): string[] => ts.map((t) => `${t.name} [${t.shape.join()}] ${bits(t.data).toString('hex')}`);
const copy = (ts: TensorList): NamedTensor[] => ts.map((t) => ({ ...t, shape: [...t.shape], data: t.data.slice() }));

/** Four modules [path, d_in, d_out] of unequal cost, both dense forms (d_in ≤ d_out and d_in > d_out); K = 12. */
const SHAPES: [string, number, number][] = [
  ['h.0.attn.c_attn', 12, 20],
  ['h.0.attn.c_proj', 8, 8],
  ['h.0.mlp.c_fc', 10, 24],
  ['h.0.mlp.c_proj', 24, 10],
];

/** An adapter of rank r over `shapes`: random values in the first `rank` components (zero beyond); B zero where `zeroB` says. */
function adapter(r: number, rank: number, rng: Prng, shapes = SHAPES, zeroB: (m: number) => boolean = () => false): NamedTensor[] {
  const v = (n: number, keep: (i: number) => boolean, zero: boolean): Float32Array =>
    Float32Array.from({ length: n }, (_, i) => (!zero && keep(i) ? (2 * rng.nextFloat() - 1) * 0.3 : 0));
  return sortByName(
    shapes.flatMap(([p, din, dout], m) => [
      { name: `base_model.model.transformer.${p}.lora_A.weight`, dtype: 'float32' as const, shape: [r, din], data: v(r * din, (i) => i < rank * din, false) },
      {
        name: `base_model.model.transformer.${p}.lora_B.weight`,
        dtype: 'float32' as const,
        shape: [dout, r],
        data: v(dout * r, (i) => i % r < rank, zeroB(m)),
      },
    ]),
  );
}

interface Site {
  readonly id: string;
  readonly n: number;
  readonly rank?: number;
  readonly delta: NamedTensor[];
}

/** The close's input for `sites` added in the given order (ranks declared as reports would), then `extra` ranks. */
function inputOf(layout: TensorList, sites: readonly Site[], extra: [string, number][] = []): StackInput {
  const s = new FloraStacking();
  const agg = s.begin(layout);
  for (const x of sites) {
    const u = { clientId: x.id, numExamples: x.n, delta: copy(x.delta) };
    agg.admit(u);
    agg.add(u);
    if (x.rank) declareFloraRank(agg, x.id, x.rank);
  }
  const sum = agg.sum() as unknown as { flora: Omit<StackInput, 'totalWeight'>; totalWeight: number };
  return { ...sum.flora, ranks: new Map([...sum.flora.ranks, ...extra]), totalWeight: sum.totalWeight };
}

describe('FLoRA close shared among worker threads', function () {
  this.timeout(120_000);

  it('1, 2, 3 and 9 threads (one per module: 4) give the calling thread’s bytes below K, at K, past K and over a dense base, in either arrival order', async function () {
    const rng = new Prng(31);
    // site-c declares rank 2, yet one module (c_proj: the cheapest, so never alone with the others) holds a third
    // component: site-c is stacked whole (4) in EVERY module, whichever thread holds that one.
    const c = adapter(4, 2, rng);
    const cproj = c.find((t) => t.name.includes('attn.c_proj.lora_A'))!;
    cproj.data.fill(0.25, 2 * 8, 3 * 8);
    c.find((t) => t.name.includes('attn.c_proj.lora_B'))!.data.fill(0.5);
    const sites: Site[] = [
      { id: 'site-b', n: 7, rank: 3, delta: adapter(4, 3, rng) },
      { id: 'site-a', n: 3, rank: 2, delta: adapter(4, 2, rng) },
      { id: 'site-c', n: 5, delta: c },
    ];
    const layout = zeroAdapter(sites[0].delta, 4);
    const dense = compactComponents(adapter(12, 12, rng), 12);
    for (const [what, base, rank] of [
      ['version 0 (product zero): below K', adapter(4, 4, rng, SHAPES, () => true), 9],
      ['a base whose B is zero in all modules but one: below K', adapter(2, 2, rng, SHAPES, (m) => m !== 2), 11],
      ['a rank-3 base: at K, not compacted', adapter(3, 3, rng), 12],
      ['a rank-6 base: past K, compacted', adapter(6, 6, rng), 12],
      ['a base in dense form: compacted again', dense, 12],
    ] as const) {
      const want = hex(nextVersion(base, inputOf(layout, sites, [['site-c', 2]])));
      expect(Number(want[0].split(' ')[1].slice(1).split(',')[0]), what).to.equal(rank);
      for (const order of [sites, [...sites].reverse()]) {
        for (const threads of [1, 2, 3, 9]) {
          const before = hex(base);
          const input = inputOf(layout, order, [['site-c', 2]]);
          const got = await nextVersionOffThread(base, input, { threads });
          expect(hex(got), `${what}, ${threads} threads`).to.deep.equal(want);
          expect(hex(base), `${what}: the base is left as it was`).to.deep.equal(before);
          for (const s of input.sites) expect(s.values.byteLength, `${what}, ${threads} threads: the round's factors are released`).to.equal(0);
        }
      }
    }
  });

  it('shares the modules by cost d_out·d_in·rank, each tensor and each factor value to exactly one thread', function () {
    // GPT-2 small's four projections of 12 blocks: c_fc and mlp.c_proj cost 4× attn.c_proj, c_attn 3×.
    const gpt2: [string, number, number][] = [];
    for (let l = 0; l < 12; l++)
      gpt2.push([`h.${l}.attn.c_attn`, 768, 2304], [`h.${l}.attn.c_proj`, 768, 768], [`h.${l}.mlp.c_fc`, 768, 3072], [`h.${l}.mlp.c_proj`, 3072, 768]);
    const layout = zeroAdapter(
      gpt2.flatMap(([p, din, dout]) => [
        { name: `base_model.model.transformer.${p}.lora_A.weight`, dtype: 'float32' as const, shape: [1, din], data: new Float32Array(din) },
        { name: `base_model.model.transformer.${p}.lora_B.weight`, dtype: 'float32' as const, shape: [dout, 1], data: new Float32Array(dout) },
      ]),
      2,
    );
    const total = layout.reduce((n, t) => n + t.data.length, 0);
    const values = Float32Array.from({ length: total }, (_, i) => i);
    for (const threads of [1, 2, 3, 7]) {
      const shares = planShares(layout, threads);
      expect(shares).to.have.length(threads);
      // Every layout tensor in exactly one share; the shares' factors together are the site's, each value once.
      expect(shares.flatMap((s) => s.layout.map((t) => t.name)).sort()).to.deep.equal(layout.map((t) => t.name).sort());
      const got = shares.flatMap((s) => [...siteShare(values, s)]).sort((a, b) => a - b);
      expect(got).to.deep.equal([...values]);
      for (const t of layout) expect(shares[shareOf(shares, t.name)].layout).to.include(t);
      // Balanced by cost: no share exceeds the mean by more than the costliest module (greedy, costliest first).
      const cost = (s: (typeof shares)[number]): number => loraModules(s.layout).reduce((n, m) => n + m.b.shape[0] * m.a.shape[1] * m.a.shape[0], 0);
      const costs = shares.map(cost);
      const mean = costs.reduce((a, b) => a + b, 0) / threads;
      for (const x of costs) expect(Math.abs(x - mean), `${threads} threads: ${costs}`).to.be.at.most(3072 * 768 * 2);
    }
    // By cost, not count: with 2 threads the shares' costs are equal here, their module counts are not.
    const two = planShares(layout, 2);
    expect(two.map((s) => loraModules(s.layout).reduce((n, m) => n + m.b.shape[0] * m.a.shape[1], 0))).to.deep.equal([
      (12 * (2304 + 768 + 3072 + 3072) * 768) / 2,
      (12 * (2304 + 768 + 3072 + 3072) * 768) / 2,
    ]);
  });

  it('with several threads, a thread that throws or exits, or a stop, rejects the close naming the cause', async function () {
    const rng = new Prng(32);
    const site: Site = { id: 'site-a', n: 3, rank: 2, delta: adapter(4, 2, rng) };
    const layout = zeroAdapter(site.delta, 4);
    const base = adapter(4, 4, rng);
    const failure = (p: Promise<unknown>): Promise<string> =>
      p.then(
        () => expect.fail('the close should have failed'),
        (e: Error) => e.message,
      );
    try {
      process.env.FLORA_DIE = 'throw';
      expect(await failure(nextVersionOffThread(base, inputOf(layout, [site]), { threadFile: DIES, threads: 3 }))).to.equal(
        "the FLoRA close's worker thread failed: simulated failure in the close thread; nothing of this round was committed",
      );
    } finally {
      delete process.env.FLORA_DIE;
    }
    expect(await failure(nextVersionOffThread(base, inputOf(layout, [site]), { threadFile: DIES, threads: 3 }))).to.equal(
      "the FLoRA close's worker thread exited (code 3) before its result; nothing of this round was committed",
    );
    // A stop while three threads compact a base of rank 400 over modules of 400: all of them end, the close rejects.
    const big: [string, number, number][] = SHAPES.map(([p]) => [p, 400, 400]);
    const wide: Site = { id: 'site-a', n: 3, rank: 2, delta: adapter(2, 2, rng, big) };
    const stop = new AbortController();
    const closing = nextVersionOffThread(adapter(400, 400, rng, big), inputOf(zeroAdapter(wide.delta, 2), [wide]), { threads: 3, signal: stop.signal });
    setTimeout(() => stop.abort(), 50);
    expect(await failure(closing)).to.equal("the FLoRA close's worker thread was stopped: the coordinator is stopping; nothing of this round was committed");
  });
});
