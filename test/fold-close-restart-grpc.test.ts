// FedAvg's close on the fold helpers (the round's global placed in the sum's memory when the attempt opens, the next
// adapter written into shared buffers: coordinator/strategy/fold-close.ts) in real coordinators over real gRPC with
// real SDK sites: three rounds of a 131,072-parameter adapter commit the same adapter files with 2 helpers as on one
// thread, and a run stopped after version 1 and restarted (its base read back from disk) commits them byte for byte
// too. The sites evaluate each candidate before it commits (served from the close's shared buffers over gRPC): what
// they evaluated is the committed adapter.
import { FOLD_THREADS_MIN_PARAMS, setFoldThreads, startFoldThreads } from '../coordinator/strategy/fold-threads';
import { closeGlobals, closeParts } from '../coordinator/strategy/fold-close';
import { readSafetensors } from '../proto/safetensors';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { PREFIX, startCoordinator, tempDir, type Harness } from './harness';
import { RoundTrainer, restartSuite, startRestartSites, stopAfterVersion1, versionFile } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const RANK = 8;
const WIDTH = FOLD_THREADS_MIN_PARAMS / (2 * RANK);
/** Seeded values, so that the global the close reads is not zeros. */
const seeded = (n: number, seed: number): Float32Array => {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 0.2;
  });
};
const adapter = (): NamedTensor[] => [
  { name: `${PREFIX}.lora_A.weight`, dtype: 'float32', shape: [RANK, WIDTH], data: seeded(RANK * WIDTH, 1) },
  { name: `${PREFIX}.lora_B.weight`, dtype: 'float32', shape: [WIDTH, RANK], data: seeded(RANK * WIDTH, 2) },
];
const ADAPTER = 'adapter_model.safetensors';
const hexOf = (ts: TensorList): string => ts.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('hex')).join('|');

/** RoundTrainer's updates; records every adapter it is asked to evaluate. */
class EvaluatingTrainer extends RoundTrainer {
  readonly evaluated = new Set<string>();
  evaluate(adapter: TensorList): Promise<Record<string, number>> {
    this.evaluated.add(hexOf(adapter));
    return Promise.resolve({ eval_loss: 1, eval_examples: 4 });
  }
}

describe('FedAvg close on the fold helpers across a coordinator restart (real gRPC)', function () {
  this.timeout(180_000);
  const { dirs, clients, coordinators } = restartSuite();
  after(() => setFoldThreads(undefined));

  async function start(runDir: string): Promise<Harness> {
    const evaluation = { enabled: true, everyRounds: 1, sites: 'participants', minSites: 2, deadlineMs: 20_000 };
    const h = await startCoordinator(runDir, { total: 3 }, { evaluation }, { initialAdapter: adapter });
    coordinators.push(h.coordinator);
    return h;
  }
  const sites = (address: string): ReturnType<typeof startRestartSites<EvaluatingTrainer>> =>
    startRestartSites(
      address,
      [0.001, -0.0005].map((v) => new EvaluatingTrainer(v)),
      clients,
    );
  /** A whole run of 3 rounds in a new directory; how many close parts the helpers and caller took meanwhile. */
  async function whole(label: string): Promise<{ dir: string; parts: number; placed: number }> {
    const dir = await tempDir(label);
    dirs.push(dir);
    const before = closeParts.helpers + closeParts.caller;
    const placed = closeGlobals.placed;
    const c = await start(dir);
    const s = sites(c.address);
    expect((await c.coordinator.done).manifest.version).to.equal(3);
    await Promise.all(s.runs);
    for (let v = 1; v <= 3; v++) {
      const committed = hexOf(readSafetensors(await versionFile(dir, v, ADAPTER)).tensors);
      for (const t of s.trainers) expect(t.evaluated.has(committed), `${label}: v${v} evaluated by a site`).to.equal(true);
    }
    return { dir, parts: closeParts.helpers + closeParts.caller - before, placed: closeGlobals.placed - placed };
  }

  it('3 rounds with 2 helpers, uninterrupted and restarted after version 1, commit the one-thread adapters byte for byte', async () => {
    expect(await startFoldThreads(2)).to.equal(2);
    setFoldThreads(0);
    const one = await whole('close-one');
    expect(one.parts, 'no close on helpers with threads off').to.equal(0);
    setFoldThreads(2);
    const threaded = await whole('close-threaded');
    expect(threaded.parts, 'each round closed in 3 parts, 2 posted').to.equal(3 * 2);
    // Each round's close found its base version in the sum's memory, placed when the attempt opened.
    expect(threaded.placed, 'closes over the placed global').to.equal(3);

    const dir = await tempDir('close-restart');
    dirs.push(dir);
    const parts = closeParts.helpers + closeParts.caller;
    const b1 = await start(dir);
    expect(await stopAfterVersion1(dir, b1.coordinator, () => sites(b1.address))).to.be.oneOf([1, 2]);
    const b2 = await start(dir);
    const sb2 = sites(b2.address);
    expect((await b2.coordinator.done).manifest.version).to.equal(3);
    await Promise.all(sb2.runs);
    expect(closeParts.helpers + closeParts.caller - parts, 'rounds 1-3 closed on the helpers, across both lives').to.be.at.least(3 * 2);
    for (let v = 0; v <= 3; v++) {
      const want = await versionFile(one.dir, v, ADAPTER);
      expect((await versionFile(threaded.dir, v, ADAPTER)).equals(want), `v${v} threaded`).to.equal(true);
      expect((await versionFile(dir, v, ADAPTER)).equals(want), `v${v} restarted`).to.equal(true);
    }
  });
});
