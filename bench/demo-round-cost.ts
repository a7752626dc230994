// What a round of `npm run demo` costs besides training: the coordinator's side (tasks, download, sealed upload,
// fold, server step, the average, signing, the version's files) with 5 sites over real gRPC whose trainer returns
// at once (the global adapter plus a constant), on the demo's real LoRA adapter. Arms: the defaults (the measured
// recipe: FedAdam with strategy.ema, so each version also writes ema/ and server-state.safetensors) and the classic
// defaults (FedAvg). Prints ms a round (rounds 2..R, after the first) and the bytes a version takes on disk.
//   node dist/bench/demo-round-cost.js [rounds=40]
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../coordinator';
import { instantOverrides, runInstantSites } from './fixtures/instant-sites';
import { loadModelDir } from '../client-sdk/model/load';
import { selectBackend } from '../client-sdk/model/backend';
import { DEFAULT_MODEL_DIR } from '../client-sdk/demo/spam-task';
import { bytesUnder } from '../client-sdk/demo/simulate';
import { classicConfig } from '../test/classic-defaults';

async function arm(name: 'recipe' | 'classic', rounds: number, modelHash: string): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `fedtune-demo-cost-${name}-`));
  const overrides = instantOverrides(dir, rounds);
  const config = name === 'recipe' ? loadConfig({ overrides }) : classicConfig({ overrides });
  const { committedAt: at, cpu } = await runInstantSites(config, modelHash);
  // at[0] is v0; at[1] round 1 (joins, first downloads): the steady rounds are 2..R.
  const ms = (at[rounds] - at[1]) / (rounds - 1);
  const versions = path.join(dir, 'versions');
  const v = await bytesUnder(path.join(versions, (await fs.readdir(versions)).sort()[2]));
  console.log(
    `${name}: ${ms.toFixed(1)} ms a round (rounds 2-${rounds}), process CPU ${((cpu.user + cpu.system) / 1000 / rounds).toFixed(1)} ms a round, ` +
      `a version ${(v / 1024).toFixed(0)} KiB on disk (600 versions: ${((600 * v) / 2 ** 20).toFixed(0)} MiB), run dir ${((await bytesUnder(dir)) / 2 ** 20).toFixed(1)} MiB`,
  );
  await fs.rm(dir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 40);
  await selectBackend();
  const { modelHash } = await loadModelDir(DEFAULT_MODEL_DIR);
  await arm('classic', rounds, modelHash);
  await arm('recipe', rounds, modelHash);
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
