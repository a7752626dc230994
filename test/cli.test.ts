// The `fedtune` command as an operator runs it: flags reach the configuration, bad ones name the key, and
// the checkpoint commands read a real run directory.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { smallAdapter, tempDir } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
const run = (args: string[]): Promise<{ code: number; out: string }> =>
  promisify(execFile)(process.execPath, [CLI, ...args], { timeout: 30_000 }).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  );

describe('fedtune command', function () {
  this.timeout(60_000);

  it('passes --section.key flags to the coordinator configuration and names a bad key', async () => {
    const r = await run(['coordinator', '--rounds.total', '0', '--server.port', '0']);
    expect(r.code).to.equal(1);
    expect(r.out).to.contain('rounds.total');
  });

  it('prints the configuration reference', async () => {
    const r = await run(['config']);
    expect(r.code).to.equal(0);
    expect(r.out).to.contain('rounds.minUpdates').and.contain('FEDTUNE_TRAINING_LEARNING_RATE');
  });

  it('lists and exports the versions of a run', async () => {
    const dir = await tempDir('cli');
    const store = new FsCheckpointStore(dir);
    for (const round of [0, 1]) {
      await store.commit({
        adapter: smallAdapter(round),
        adapterConfig: { peft_type: 'LORA' },
        manifest: {
          runId: 'cli',
          round,
          attempt: 1,
          strategy: 'fedavg',
          participants: [],
          metrics: { 'heldout.eval_loss': 1 / (round + 1) },
          config: {},
          seeds: { run: 1 },
          baseModel: { name: 'b', sha256: '0'.repeat(64) },
          protocolVersion: 1,
        },
      });
    }
    const list = await run(['checkpoints', 'list', dir]);
    expect(list.code).to.equal(0);
    expect(list.out.split('\n')[2]).to.match(/^v1\s+1\s+1\s+0\s+0\s+-\s+-\s+-\s+0\.5000/);
    const out = path.join(dir, 'export');
    const exported = await run(['checkpoints', 'export', dir, '1', out]);
    expect(exported.code).to.equal(0);
    // A store without a signer: the copy checks as unsigned; verify-export, which expects a signature, says so.
    expect(exported.out).to.contain('OK: v000001: manifest, 2 listed files and their sha256, unsigned');
    expect((await fs.readdir(out)).sort()).to.deep.equal(['adapter_config.json', 'adapter_model.safetensors', 'manifest.json']);
    const checked = await run(['checkpoints', 'verify-export', out]);
    expect(checked.code).to.equal(1);
    expect(checked.out).to.contain('v000001/manifest.sig: missing: this version is not signed');
    await fs.rm(dir, { recursive: true, force: true });
  });
});
