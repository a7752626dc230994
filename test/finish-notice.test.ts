// A coordinator restarted after its last commit finds the run over at once. Shut down at once, it would leave the
// final round's sites — reconnecting after the crash — retrying forever: nobody tells them the run ended.
// Coordinator.finishNotice (what `fedtune coordinator` runs after the run ends, server.finishNoticeMs) keeps serving
// until every participant of the final version was told, and no longer than its bound. Real gRPC, real sites.
import { ConstantTrainer, startCoordinator, tempDir } from './harness';
import { restartSuite, startRestartSites } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('the finish notice: sites reconnecting to a finished run learn it is over (real gRPC)', function () {
  this.timeout(60_000);
  const { dirs, clients, coordinators } = restartSuite();

  it('a coordinator restarted on a finished run serves until the final round’s sites were told, then lets go; with nobody coming, at its bound', async () => {
    const runDir = await tempDir('finish-notice');
    dirs.push(runDir);
    const trainers = () => [new ConstantTrainer(0.5), new ConstantTrainer(0.25)];
    const first = await startCoordinator(runDir, { total: 1 });
    coordinators.push(first.coordinator);
    const s1 = startRestartSites(first.address, trainers(), clients);
    expect((await first.coordinator.done).manifest.version).to.equal(1);
    // The first process is gone before its sites heard the end (as a kill -9 right after the last commit leaves it).
    await s1.stop();
    await first.coordinator.stop(200);

    const second = await startCoordinator(runDir, { total: 1 });
    coordinators.push(second.coordinator);
    expect((await second.coordinator.done).manifest.version).to.equal(1); // over at once: nothing left to run
    let noticeOver = false;
    const notice = second.coordinator.finishNotice(20_000).then(() => (noticeOver = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(noticeOver, 'kept serving while the final round’s sites are away').to.equal(false);
    const t0 = Date.now();
    const s2 = startRestartSites(second.address, trainers(), clients);
    const summaries = (await Promise.all(s2.runs)) as { finalVersion: number; reason: string }[];
    expect(summaries.map((s) => s.finalVersion)).to.deep.equal([1, 1]);
    expect(summaries.map((s) => s.reason)).to.deep.equal(['all rounds committed', 'all rounds committed']);
    await notice;
    expect(Date.now() - t0, 'let go once both were told, far before its bound').to.be.below(10_000);
    expect([...second.coordinator.engine.finishNotice.told].length).to.equal(2);
    await second.coordinator.stop(200);

    // Nobody comes back: the notice ends at its bound.
    const third = await startCoordinator(runDir, { total: 1 });
    coordinators.push(third.coordinator);
    await third.coordinator.done;
    const t1 = Date.now();
    await third.coordinator.finishNotice(400);
    expect(Date.now() - t1).to.be.within(380, 3_000);
    await third.coordinator.stop(200);
  });
});
