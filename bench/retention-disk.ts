// The default demo's disk with and without version retention (checkpoints.*), over its real coordinator: the default
// recipe (FedAdam with the average: each version writes adapter, ema/ and server-state.safetensors) on the demo's
// real LoRA adapter, 5 sites over real gRPC whose trainer returns at once (file sizes do not depend on training).
// Arms: every file kept (keepServerState 0, keepAdapters 0) and the defaults. Prints the bytes under versions/, the
// versions keeping each kind of file, the coordinator's ms a round (the prune pass included), and the 600-round
// bound computed from the measured file sizes. `fedtune verify` must accept the pruned run.
//   node dist/bench/retention-disk.js [rounds=600] [--twice]
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../coordinator';
import { instantOverrides, runInstantSites } from './fixtures/instant-sites';
import { loadModelDir } from '../client-sdk/model/load';
import { selectBackend } from '../client-sdk/model/backend';
import { DEFAULT_MODEL_DIR } from '../client-sdk/demo/spam-task';
import { bytesUnder } from '../client-sdk/demo/simulate';
import { verifyRun } from '../coordinator/checkpoints/verify';
import { runKey } from '../coordinator/checkpoints/recover';
import { filesToPrune, type RetentionPolicy } from '../coordinator/checkpoints/retention';

async function arm(name: 'keep-all' | 'defaults', rounds: number, modelHash: string): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `fedtune-retention-${name}-`));
  const overrides = {
    ...instantOverrides(dir, rounds),
    ...(name === 'keep-all' ? { checkpoints: { keepServerState: 0, keepAdapters: 0 } } : {}),
  };
  const config = loadConfig({ overrides });
  const { committedAt: at } = await runInstantSites(config, modelHash);
  const versions = path.join(dir, 'versions');
  const total = await bytesUnder(versions);
  const count = async (f: string): Promise<number> => {
    let n = 0;
    for (const v of await fs.readdir(versions))
      if (
        await fs.stat(path.join(versions, v, f)).then(
          () => true,
          () => false,
        )
      )
        n++;
    return n;
  };
  const size = async (v: string, f: string): Promise<number> => (await fs.stat(path.join(versions, v, f))).size;
  const last = `v${String(rounds).padStart(6, '0')}`;
  const ms = (at[rounds] - at[1]) / (rounds - 1);
  const r = await verifyRun(dir, { publicKey: (await runKey(dir))!.publicKey });
  const files = {
    adapter: await size(last, 'adapter_model.safetensors'),
    ema: await size(last, 'ema/adapter_model.safetensors'),
    emaConfig: await size(last, 'ema/adapter_config.json'),
    serverState: await size(last, 'server-state.safetensors'),
    manifest: await size(last, 'manifest.json'),
  };
  const withAdapter = await count('adapter_model.safetensors');
  const withServerState = await count('server-state.safetensors');
  const weights = files.adapter + files.ema + files.emaConfig;
  // What every version keeps whatever the policy (manifest, signature, adapter_config.json, pruned.json): the mean.
  // v000000 has no ema/ (nothing averaged yet): count the averaged adapter's versions on their own.
  const withEma = await count('ema/adapter_model.safetensors');
  const skeleton = (total - withAdapter * files.adapter - withEma * (files.ema + files.emaConfig) - withServerState * files.serverState) / (rounds + 1);
  console.log(
    JSON.stringify({
      arm: name,
      rounds,
      versions: rounds + 1,
      bytes: total,
      mib: +(total / 2 ** 20).toFixed(1),
      withAdapter,
      withServerState,
      pruned: await count('pruned.json'),
      msPerRound: +ms.toFixed(1),
      verify: r.ok ? 'ok' : `${r.problems.length} problems`,
      latestFiles: files,
      skeletonPerVersion: Math.round(skeleton),
      at600: projection(config.checkpoints, 600, weights, files.ema + files.emaConfig, files.serverState, skeleton),
    }),
  );
  await fs.rm(dir, { recursive: true, force: true });
}

/**
 * The bytes after `total` rounds, computed from the measured sizes: every version's skeleton, the weights of the
 * versions the policy keeps them for, and (the bound) release and best elsewhere keeping everything: 2 more.
 */
function projection(p: RetentionPolicy, total: number, weights: number, ema: number, state: number, skeleton: number): Record<string, number> {
  let adapters = 0;
  let states = 0;
  let lessEma = 0;
  for (let v = 0; v <= total; v++) {
    const gone = filesToPrune(p, v, total, new Set());
    if (!gone.includes('adapter_model.safetensors')) adapters++;
    if (v === 0 && !gone.includes('adapter_model.safetensors')) lessEma++; // v000000 keeps an adapter, never an ema/
    // v000000 has no server state (nothing stepped yet).
    if (v > 0 && !gone.includes('server-state.safetensors')) states++;
  }
  const bytes = (total + 1) * skeleton + adapters * weights - lessEma * ema + states * state;
  const bound = bytes + 2 * (weights + state);
  return { adapters, states, bytes: Math.round(bytes), mib: +(bytes / 2 ** 20).toFixed(1), boundMib: +(bound / 2 ** 20).toFixed(1) };
}

async function main(): Promise<void> {
  const rounds = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 600);
  await selectBackend();
  const { modelHash } = await loadModelDir(DEFAULT_MODEL_DIR);
  // Alternated (--twice: keep-all, defaults, keep-all, defaults): the ms a round of a loaded box drift over minutes.
  const order: ('keep-all' | 'defaults')[] = process.argv.includes('--twice') ? ['keep-all', 'defaults', 'keep-all', 'defaults'] : ['keep-all', 'defaults'];
  for (const a of order) await arm(a, rounds, modelHash);
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
