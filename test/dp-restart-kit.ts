// What the DP restart tests share (test/dp-noise-aware-restart.test.ts, test/dp-adaptive-clip-restart.test.ts): a
// DP-FedAvg run of three versions over real gRPC with two sites, made twice (uninterrupted, and stopped after version
// 1 and restarted on its directory), its noise drawn per round from a fixed seed (production draws a fresh secret
// one) so both runs add the same noise in the same round; the adapters and server-state.safetensors of versions 1-3
// must match byte for byte.
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { SERVER_STATE_FILE } from '../coordinator/checkpoints/server-state';
import { DpStrategy, type DpSettings } from '../coordinator/strategy/dp';
import type { Strategy } from '../coordinator/strategy/strategy';
import { GaussianStream } from '../proto/gaussian';
import type { TensorList } from '../proto/tensors';
import { startCoordinator, type Harness } from './harness';
import { differingVersionFiles, runTwiceWithRestart, startRestartSites, type RestartSuite } from './restart-sites';

/** Moves value i by k·(1 + i mod 3)/(round + 1): the update changes from round to round. */
export class StepTrainer implements Trainer {
  readonly backend = 'test';
  constructor(private readonly k: number) {}
  async train(global: TensorList, plan: TrainingPlan): Promise<TrainOutcome> {
    const adapter = global.map((t) => ({ ...t, data: t.data.map((x, i) => x + (this.k * (1 + (i % 3))) / (plan.round + 1)) }));
    return { adapter, numExamples: 10, metrics: {} };
  }
}

export interface DpRestartRun {
  /** The configuration's strategy and privacy sections. */
  readonly strategy: Record<string, unknown>;
  readonly privacy: Record<string, unknown>;
  /** The strategy DP-FedAvg wraps, made fresh for each coordinator, and DP-FedAvg's settings (as the privacy section's). */
  readonly inner: () => Strategy;
  readonly dp: DpSettings;
  /** The two sites' StepTrainer factors. */
  readonly k: readonly [number, number];
}

/**
 * The run twice; returns both directories once their versions 1-3 are checked equal (adapters and server state) and
 * the restart began from version 1 or 2. Throws naming the files that differ.
 */
export async function dpRunTwice(suite: RestartSuite, prefix: string, run: DpRestartRun): Promise<{ dirA: string; dirB: string }> {
  const start = async (runDir: string, committed: number): Promise<Harness> => {
    let round = committed;
    const strategy = new DpStrategy(run.inner(), run.dp, () => new GaussianStream(new Uint8Array(32).fill(++round)));
    const h = await startCoordinator(runDir, { total: 3 }, { strategy: run.strategy, privacy: run.privacy }, { strategy });
    suite.coordinators.push(h.coordinator);
    return h;
  };
  const sites = (h: Harness) =>
    startRestartSites(
      h.address,
      run.k.map((k) => new StepTrainer(k)),
      suite.clients,
    );
  const { dirA, dirB, restartedFrom } = await runTwiceWithRestart(suite, prefix, start, sites, 3);
  if (restartedFrom !== 1 && restartedFrom !== 2) throw new Error(`the restart began from version ${restartedFrom}, not 1 or 2`);
  const differ = await differingVersionFiles(dirA, dirB, 3, ['adapter_model.safetensors', SERVER_STATE_FILE]);
  if (differ.length) throw new Error(`the restarted run differs from the uninterrupted one: ${differ.join(', ')}`);
  return { dirA, dirB };
}
