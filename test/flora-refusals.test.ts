// FLoRA (lora.aggregation 'flora') over raw gRPC without training: hostile uploads and reports are refused with
// INVALID_ARGUMENT and leave the run directory as it was; a restarted coordinator stacks the update it had spooled.
import { promises as fs } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { Prng } from '../proto/prng';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { expectRefused, startCoordinator, tempDir, upload, uploadFrames } from './harness';
import { rawRound, rawSites } from './sites-kit';
import { A_IN, MOD, expectProduct, twoModules, weightedProducts } from './flora-kit';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** Version 0 of these tests: two modules at rank 4, lora_B zero. */
const init = (): NamedTensor[] => twoModules(4, 4, new Prng(1)).map((t) => (t.name.includes('lora_B') ? { ...t, data: new Float32Array(t.data.length) } : t));

/** A 'flora' coordinator (lora.r 4) in round 1 with two raw sites; site-a's upload and report (3 examples) as calls. */
async function roundOne(prefix: string) {
  const h = await startCoordinator(await tempDir(prefix), { total: 1 }, { lora: { r: 4, dropout: 0, aggregation: 'flora' } }, { initialAdapter: init });
  const s = await rawRound(h, ['site-a', 'site-b']);
  const [c, a] = [s.c, s.joined[0]];
  const [taskA] = await Promise.all(s.tasks);
  const send = (t: TensorList) => () => upload(c, uploadFrames({ who: a, task: taskA, numExamples: 3 }, t));
  const report = (rank: number) => (): Promise<void> =>
    new Promise((res, rej) =>
      c.ReportMetrics(
        { session_token: a.session_token, task_id: taskA.task_id, round: taskA.round, num_examples: 3, backend: 'test', metrics: {}, lora_rank: rank },
        (e) => (e ? rej(e) : res()),
      ),
    );
  return { h, taskA, send, report, close: () => s.close() };
}

describe('FLoRA over raw gRPC: refusals and a restart', function () {
  it('over gRPC: an upload of the wrong shape, a NaN factor, a rank above lora.r and a rank that drops components are refused (INVALID_ARGUMENT), nothing persisted', async function () {
    const { h, taskA, send, report, close } = await roundOne('flora-refuse');
    try {
      expect(taskA.config!.lora_aggregation).to.equal('flora');
      expect(taskA.config!.flora_rank).to.equal(4);
      // The round's upload layout is the fresh rank lora.r = 4, whatever the version's stacked rank.
      await expectRefused(
        h.runDir,
        send(twoModules(3, 3, new Prng(2))),
        grpc.status.INVALID_ARGUMENT,
        `tensor ${MOD(0)}.lora_A.weight has shape [3,16]; the global adapter has [4,16]`,
      );
      const nan = twoModules(4, 2, new Prng(2)).map((t, k) => (k === 3 ? { ...t, data: Float32Array.from(t.data, (x, i) => (i === 1 ? NaN : x)) } : t));
      await expectRefused(h.runDir, send(nan), grpc.status.INVALID_ARGUMENT, `tensor ${MOD(1)}.lora_B.weight holds NaN at element 1; factors must be finite`);
      // Nothing of either refusal was kept: the site's proper upload is then accepted.
      expect((await send(twoModules(4, 2, new Prng(2)))()).duplicate).to.equal(false);
      await expectRefused(h.runDir, report(5), grpc.status.INVALID_ARGUMENT, "lora_rank 5 exceeds the adapter's rank 4");
      await expectRefused(h.runDir, report(1), grpc.status.INVALID_ARGUMENT, 'lora_rank 1: the uploaded factors have non-zero components beyond it');
      await report(2)();
      expect((await h.coordinator.store.latest())!.manifest.version).to.equal(0);
    } finally {
      await close();
    }
  });

  it('a report before its upload: an upload with non-zero components beyond the declared rank is refused (INVALID_ARGUMENT), nothing persisted; one within it is accepted', async function () {
    const { h, send, report, close } = await roundOne('flora-report-first');
    try {
      await report(2)();
      await expectRefused(
        h.runDir,
        send(twoModules(4, 3, new Prng(2))),
        grpc.status.INVALID_ARGUMENT,
        'lora_rank 2: the uploaded factors have non-zero components beyond it',
      );
      expect((await send(twoModules(4, 2, new Prng(2)))()).duplicate).to.equal(false);
    } finally {
      await close();
    }
  });

  it('a restarted coordinator stacks the update it spooled (its site never reported a rank: all lora.r components), exactly', async function () {
    const runDir = await tempDir('flora-restart');
    const cfg = [runDir, { total: 1 }, { lora: { r: 4, dropout: 0, aggregation: 'flora' } }, { initialAdapter: init }] as const;
    const h1 = await startCoordinator(...cfg);
    const first = await rawSites(h1.address, ['site-a', 'site-b']);
    const fa = twoModules(4, 2, new Prng(31));
    await upload(first.c, uploadFrames({ who: first.joined[0], task: await first.tasks[0], numExamples: 3 }, fa));
    first.hangUp();
    await h1.coordinator.stop(500);
    const h2 = await startCoordinator(...cfg);
    const s = await rawSites(h2.address, ['site-a', 'site-b']);
    const { c } = s;
    try {
      const b = s.joined[1];
      const taskB = await s.tasks[1];
      const fb = twoModules(4, 2, new Prng(32));
      await upload(c, uploadFrames({ who: b, task: taskB, numExamples: 7 }, fb));
      await new Promise<void>((res, rej) =>
        c.ReportMetrics(
          { session_token: b.session_token, task_id: taskB.task_id, round: 1, num_examples: 7, backend: 'test', metrics: {}, lora_rank: 2 },
          (e) => (e ? rej(e) : res()),
        ),
      );
      await h2.coordinator.done;
      const v1 = await h2.coordinator.store.read(1);
      // site-a never reported: its carried update keeps all 4 components (2 of them zero), site-b its declared 2: rank 6.
      expect(v1.adapter[0].shape).to.deep.equal([6, A_IN]);
      expectProduct(
        v1.adapter,
        weightedProducts([
          { adapter: fa, w: 3 / 10 },
          { adapter: fb, w: 7 / 10 },
        ]),
        'v1 after a restart',
      );
    } finally {
      s.hangUp();
      await h2.coordinator.stop(500);
      await fs.rm(runDir, { recursive: true, force: true });
    }
  });
});
