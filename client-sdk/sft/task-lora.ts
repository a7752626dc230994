// LoRA settings taken from the coordinator's adapter rather than copied by hand: the rank and the target
// modules are read off the global adapter each task brings (its PEFT key names and shapes). A site may still
// state them (--lora.r, --lora.target-modules) as a check; a mismatch is an error naming both values.
// alpha and dropout do not show in the tensors: they come from the site's options (defaults alpha = 2r, as
// the coordinator's defaults r 8 / alpha 16, and dropout 0.05).
import type { TensorList } from '../../proto/tensors';
import { canonicalAdapter, parsePeftKey, type LoraConfig } from '../../proto/model/lora-layout';
import type { Trainer, TrainingPlan, TrainOutcome } from '../trainer';
import type { CausalLm } from '../model/load';
import { LoraSftTrainer, type SftData } from './lora-trainer';

export interface SiteLoraOptions {
  /** Expected rank; checked against the coordinator's adapter. */
  readonly r?: number;
  /** Expected target modules (short names); checked against the coordinator's adapter. */
  readonly targetModules?: readonly string[];
  /** Default 2·r. */
  readonly alpha?: number;
  /** Default 0.05. */
  readonly dropout?: number;
  readonly useRslora?: boolean;
}

export class LoraMismatchError extends Error {
  override name = 'LoraMismatchError';
}

/** r, the module short names and (when not every layer has them) the layers of an adapter. */
export function loraLayoutOf(adapter: TensorList): { r: number; targetModules: string[]; layers: number[] } {
  const names = new Set<string>();
  const layers = new Set<number>();
  let r: number | undefined;
  for (const t of canonicalAdapter(adapter)) {
    const k = parsePeftKey(t.name) as { path: string; which: 'A' | 'B' };
    names.add(k.path.slice(k.path.lastIndexOf('.') + 1));
    layers.add(Number(k.path.split('.')[1]));
    const rank = k.which === 'A' ? t.shape[0] : t.shape[1];
    if (r !== undefined && rank !== r) throw new LoraMismatchError(`the coordinator's adapter mixes ranks ${r} and ${rank}`);
    r = rank;
  }
  if (r === undefined) throw new LoraMismatchError("the coordinator's adapter has no LoRA tensors");
  return { r, targetModules: [...names].sort(), layers: [...layers].sort((a, b) => a - b) };
}

/** The LoraConfig for a coordinator's adapter and this site's options; a stated r or target list must agree. */
export function loraConfigFromTask(adapter: TensorList, nLayer: number, site: SiteLoraOptions): LoraConfig {
  const got = loraLayoutOf(adapter);
  if (site.r !== undefined && site.r !== got.r) throw new LoraMismatchError(`the coordinator's adapter has r=${got.r}; this site says --lora.r ${site.r}`);
  if (site.targetModules !== undefined) {
    const want = [...site.targetModules].sort();
    if (want.join(',') !== got.targetModules.join(',')) {
      throw new LoraMismatchError(`the coordinator's adapter targets ${got.targetModules.join(',')}; this site says --lora.target-modules ${want.join(',')}`);
    }
  }
  const all = got.layers.length === nLayer && got.layers.every((l, i) => l === i);
  return {
    r: got.r,
    alpha: site.alpha ?? 2 * got.r,
    dropout: site.dropout ?? 0.05,
    targetModules: got.targetModules,
    ...(site.useRslora ? { useRslora: true } : {}),
    ...(all ? {} : { layersToTransform: got.layers }),
  };
}

/** A Trainer whose LoRA settings follow the coordinator's adapter (one LoraSftTrainer per distinct layout). */
export class TaskLoraTrainer implements Trainer {
  private readonly trainers = new Map<string, LoraSftTrainer>();
  /** A mismatch between the site's stated settings and the coordinator's: retrying cannot help. */
  fatal?: LoraMismatchError;

  constructor(private readonly opts: { readonly model: CausalLm; readonly data: SftData; readonly lora: SiteLoraOptions; readonly backend: string }) {}

  get backend(): string {
    return this.opts.backend;
  }

  private trainerFor(adapter: TensorList): LoraSftTrainer {
    let lora: LoraConfig;
    try {
      lora = loraConfigFromTask(adapter, this.opts.model.config.nLayer, this.opts.lora);
    } catch (e) {
      if (e instanceof LoraMismatchError) this.fatal ??= e;
      throw e;
    }
    const key = JSON.stringify(lora);
    let t = this.trainers.get(key);
    if (!t) {
      t = new LoraSftTrainer({ model: this.opts.model, lora, ...this.opts.data });
      this.trainers.set(key, t);
    }
    return t;
  }

  train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal): Promise<TrainOutcome> {
    return this.trainerFor(global).train(global, plan, signal);
  }

  evaluate(adapter: TensorList): Promise<Record<string, number>> {
    return this.trainerFor(adapter).evaluate(adapter);
  }
}
