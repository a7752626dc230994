// Sites print per-step progress while they train locally: off a terminal one pino JSON line per step (site,
// round, step, total, loss), on a terminal a progress bar. A real `fedtune-site client` over real gRPC, with
// stdout a pipe, prints exactly one line per step, and their losses average to the train_loss the manifest
// records for that site.
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { promises as fs } from 'node:fs';
import { startCoordinator, tempDir, type Harness } from './harness';
import { parseProgressMode, trainProgress } from '../client-sdk/site/progress';
import { DEFAULT_MODEL_DIR } from '../client-sdk/demo/spam-task';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const SITE_CLI = path.join(__dirname, '..', 'client-sdk', 'cli', 'fedtune-site.js');
// The exact shape of a step line: pino's level name and time, then the step's fields, then the message.
const STEP_LINE =
  /^\{"level":"info","time":\d{13},"site":"site-a","round":1,"step":(\d+),"total":3,"loss":(\d+(?:\.\d+)?(?:e-?\d+)?),"msg":"train step (\d+)\/3 loss (\d+\.\d{4})"\}$/;

function sink(): { stream: Writable & { isTTY?: boolean; columns?: number }; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  return { stream, text: () => text };
}

describe('ops: per-step training progress at the site', function () {
  this.timeout(180_000);
  let tmp: string;
  let h: Harness | undefined;
  before(async () => {
    tmp = await tempDir('fedtune-ops-progress-');
  });
  after(async () => {
    await h?.coordinator.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('a real site over gRPC, stdout not a terminal: one JSON line per step with step/total/loss, averaging to its train_loss', async () => {
    h = await startCoordinator(
      path.join(tmp, 'run'),
      { total: 1, minClients: 1, minUpdates: 1, deadlineMs: 150_000 },
      {
        model: { dir: DEFAULT_MODEL_DIR, name: 'demo' },
        lora: { r: 8, alpha: 16, dropout: 0.05, targetModules: ['c_attn', 'c_proj', 'c_fc'] },
        training: { localSteps: 3, batchSize: 2 },
      },
      { fromModelDir: true },
    );
    const r = await promisify(execFile)(
      process.execPath,
      [SITE_CLI, 'client', '--address', h.address, '--name', 'site-a', '--shard', '0', '--of', '2', '--identity', path.join(tmp, 'a.id.json')],
      { timeout: 170_000, env: { PATH: process.env.PATH ?? '' } },
    );
    const lines = r.stdout.split('\n').filter((l) => l.includes('train step'));
    expect(lines, r.stdout).to.have.length(3);
    const losses = lines.map((l, i) => {
      const m = STEP_LINE.exec(l);
      expect(m, l).to.not.equal(null);
      expect([Number(m![1]), Number(m![3])]).to.deep.equal([i + 1, i + 1]);
      const loss = Number(m![2]);
      expect(m![4]).to.equal(loss.toFixed(4));
      expect(Number.isFinite(loss) && loss > 0).to.equal(true);
      return loss;
    });
    // The lines come before the site reports its task done, and after it joined.
    const order = ['"msg":"joined"', 'train step 1/3', 'train step 3/3', '"msg":"task done"'].map((t) => r.stdout.indexOf(t));
    expect(
      order.every((x, i) => x >= 0 && (i === 0 || x > order[i - 1])),
      r.stdout,
    ).to.equal(true);
    const final = await h.coordinator.done;
    const trainLoss = final.manifest.participants[0]!.metrics!.train_loss!;
    // f32 on the device, summed there; the lines print each step's f32 loss: their mean is train_loss.
    expect(Math.abs(losses.reduce((a, b) => a + b, 0) / 3 - trainLoss)).to.be.below(1e-6 * trainLoss);
  });

  it('json mode writes exactly this line; bar mode draws a bar per round; off prints nothing; a bad mode is refused by name', () => {
    const out = sink();
    const json = trainProgress('north', 'json', { out: out.stream });
    json!({ round: 2, step: 1, total: 4, loss: 1.5 });
    expect(out.text()).to.match(
      /^\{"level":"info","time":\d{13},"site":"north","round":2,"step":1,"total":4,"loss":1.5,"msg":"train step 1\/4 loss 1.5000"\}\n$/,
    );
    const bar = sink();
    bar.stream.isTTY = true;
    bar.stream.columns = 120;
    const draw = trainProgress('north', 'bar', { bar: bar.stream });
    for (let s = 1; s <= 4; s++) draw!({ round: 3, step: s, total: 4, loss: 2 / s });
    expect(bar.text()).to.contain('north round 3 [').and.contain('] 4/4 steps | loss 0.5000');
    expect(trainProgress('north', 'off')).to.equal(undefined);
    expect(() => parseProgressMode('fancy')).to.throw("--progress must be one of auto, bar, json, off, not 'fancy'");
  });
});
