// The site's trainer when it trains on the WebGPU engine: the engine path it started on, and the backends it falls
// back to, in order, for the rest of the run after a GPU failure (tensor-core/f16 engine → f32 engine → tfjs).
// The round that failed fails as a task (the SDK reports it and uploads nothing; the coordinator's deadline and
// retry take it from there): its adapter may have been computed on a dying device, so it is never sent. Every
// change of backend is logged with the reason, and `backend` (which the SDK reports with each round's metrics, and
// the coordinator records per participant in the manifest) always names the backend that trained the round.
import type { TensorList } from '../../proto/tensors';
import type { EvaluateOptions, Trainer, TrainingPlan, TrainOutcome, TrainStep } from '../trainer';
import { LoraSftTrainer, type LoraSftTrainerOptions } from '../sft/lora-trainer';
import type { CausalLm } from '../model/load';
import { isGpuFailure, type GpuFailure } from './gpu-failure';
import { createEngineTrainer } from './trainer';
import type { EnginePath } from './program';

/** One backend a site can move to: what it is called before it opens, and how to open it. */
export interface TrainerStage {
  readonly name: string;
  /** The trainer, or why this stage cannot be used here (the next one is tried). */
  open(): Promise<Trainer | { error: string }>;
}

export type FallbackLog = (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>) => void;

/** One JSON line per event on stdout, as the demo site logs (client-sdk/demo/site.ts). */
const jsonLog: FallbackLog = (level, msg, fields) => console.log(JSON.stringify({ level, msg, ...fields }));

// A lost device's queue may never drain; the site does not wait on it for long.
const DISPOSE_WAIT_MS = 5000;

/**
 * The stages after an engine path fails: the f32 engine (after tc or f16; same device unless it was lost), then
 * tfjs, which needs no GPU of the engine's and is always last.
 */
export function fallbackStages(failed: EnginePath, open: { engine(path: EnginePath): Promise<Trainer | { error: string }>; tfjs(): Trainer }): TrainerStage[] {
  const stages: TrainerStage[] = [];
  if (failed !== 'f32') stages.push({ name: 'engine-f32', open: () => open.engine('f32') });
  stages.push({ name: 'tfjs', open: () => Promise.resolve(open.tfjs()) });
  return stages;
}

export class FallbackTrainer implements Trainer {
  private current: Trainer;
  private readonly rest: TrainerStage[];
  /** Every change of backend, in order (for the site's summary and tests). */
  readonly changes: { from: string; to: string; reason: string }[] = [];

  // Every task goes to the backend in use, FLoRA rounds and stacks to score included: each stage (engine or tfjs)
  // trains and scores them itself.
  constructor(
    first: Trainer,
    stages: readonly TrainerStage[],
    private readonly log: FallbackLog = jsonLog,
  ) {
    this.current = first;
    this.rest = [...stages];
  }

  /** The backend that trains the next round (and trained the last one that succeeded). */
  get backend(): string {
    return this.current.backend;
  }

  /** The trainer in use now. */
  get active(): Trainer {
    return this.current;
  }

  async train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal, onStep?: (s: TrainStep) => void): Promise<TrainOutcome> {
    const t = this.current;
    try {
      return await t.train(global, plan, signal, onStep);
    } catch (e) {
      if (!isGpuFailure(e)) throw e;
      const next = await this.fallBack(t, e);
      throw new Error(`${e.message}; round ${plan.round} fails on this site (nothing uploaded), which trains on ${next} from its next task`, { cause: e });
    }
  }

  async evaluate(adapter: TensorList, opts?: EvaluateOptions): Promise<Record<string, number>> {
    return this.current.evaluate ? this.current.evaluate(adapter, opts) : {};
  }

  async dispose(): Promise<void> {
    await disposeOf(this.current);
  }

  private async fallBack(failed: Trainer, cause: GpuFailure): Promise<string> {
    this.log('warn', 'GPU failure: this round fails, the site changes backend', { backend: failed.backend, kind: cause.kind, reason: cause.detail });
    await Promise.race([disposeOf(failed).catch(() => undefined), new Promise((r) => setTimeout(r, DISPOSE_WAIT_MS).unref())]);
    for (let stage = this.rest.shift(); stage; stage = this.rest.shift()) {
      const t = await stage.open().catch((e: unknown) => ({ error: e instanceof Error ? e.message : String(e) }));
      if ('error' in t) {
        this.log('warn', 'fallback backend unavailable, trying the next', { backend: stage.name, reason: t.error });
        continue;
      }
      this.current = t;
      this.changes.push({ from: failed.backend, to: t.backend, reason: cause.message });
      this.log('info', 'training backend changed', { from: failed.backend, to: t.backend, reason: cause.message });
      return t.backend;
    }
    // Only reachable when a failing trainer was already the last stage (tfjs never throws a GpuFailure).
    this.log('warn', 'no fallback backend left; the site keeps its backend', { backend: failed.backend });
    return failed.backend;
  }
}

function disposeOf(t: Trainer): Promise<void> {
  const d = (t as { dispose?: () => Promise<void> }).dispose;
  return d ? d.call(t) : Promise.resolve();
}

/**
 * The engine trainer with its fallbacks (what trainerForModel gives a site that asks for the engine), or why the
 * engine cannot be used at all (then the caller decides: tfjs for 'auto', an error for a named path).
 */
export async function createFallbackEngineTrainer(
  opts: LoraSftTrainerOptions<CausalLm> & { path?: EnginePath; maxGradNorm?: number },
  log: FallbackLog = jsonLog,
): Promise<FallbackTrainer | { error: string }> {
  const first = await createEngineTrainer(opts);
  if ('error' in first) return first;
  const { model, lora, train, eval: ev, choices, evalBatchSize, evalMaxSeqLen } = opts;
  const stages = fallbackStages(first.path, {
    // The same device unless it was lost (createEngineTrainer then opens a fresh one).
    engine: (path) => createEngineTrainer({ ...opts, path, device: first.device }),
    tfjs: () => new LoraSftTrainer({ model, lora, train, eval: ev, choices, evalBatchSize, evalMaxSeqLen }),
  });
  log('info', 'training backend', { backend: first.backend, adapter: first.device.caps.adapter, fallbacks: stages.map((s) => s.name) });
  return new FallbackTrainer(first, stages, log);
}
