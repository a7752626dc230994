// LoRA settings taken from the coordinator's adapter rather than copied by hand: the rank and the target
// modules are read off the global adapter each task brings (its PEFT key names and shapes). A site may still
// state them (--lora.r, --lora.target-modules) as a check; a mismatch is an error naming both values, except a
// smaller --lora.r, which the site trains and zero-pads to the adapter's rank (rank-padding.ts).
// alpha and dropout do not show in the tensors: alpha comes from the site's options, else the task plan (the
// coordinator's lora.alpha), else 2r; dropout from the task plan (the coordinator's lora.dropout; a stated
// --lora.dropout is a check, a mismatch naming both values), else, from an older coordinator, the site's options
// (default 0.05).
// Under lora.aggregation 'flora' the adapter a task brings is the version's stack, not the adapter a site trains:
// the site trains a fresh LoRA of its own rank on top of it (flora-site.ts).
import type { TensorList } from '../../proto/tensors';
import { canonicalAdapter, loraScaling, parsePeftKey, type LoraConfig } from '../../proto/model/lora-layout';
import { padToRank, truncateToRank } from './rank-padding';
import type { EvaluateOptions, Trainer, TrainingPlan, TrainOutcome, TrainStep } from '../trainer';
import type { CausalLm } from '../model/load';
import { LoraSftTrainer, type SftData } from './lora-trainer';
import { floraFreshLora, stackLayout, stackLoraConfig } from './flora-site';

export interface SiteLoraOptions {
  /** Rank to train: the coordinator's adapter's (a check) or smaller (zero-padded to it); larger is refused. */
  readonly r?: number;
  /** Expected target modules (short names); checked against the coordinator's adapter. */
  readonly targetModules?: readonly string[];
  /** Alpha for the rank this site trains. Default: the coordinator's (task plan), else 2·r; a smaller rank keeps the adapter's scaling. */
  readonly alpha?: number;
  /** Checked against the task plan's (the coordinator's lora.dropout); used only when the plan states none. Default 0.05. */
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

/**
 * The LoraConfig of a coordinator's adapter (its rank; the rank a model evaluates it at) for this site's options.
 * A stated target list must agree; a stated r may be smaller (the site trains that rank, zero-padded: see
 * siteRankPlan) but not larger. alpha: the site's for the adapter's own rank, else the coordinator's
 * (`globalAlpha`, from the task plan), else 2·r. dropout: the task plan's (`globalDropout`), which a stated
 * site dropout must equal, else the site's, else 0.05.
 */
export function loraConfigFromTask(adapter: TensorList, nLayer: number, site: SiteLoraOptions, globalAlpha?: number, globalDropout?: number): LoraConfig {
  const got = loraLayoutOf(adapter);
  if (site.r !== undefined && !(Number.isInteger(site.r) && site.r >= 1 && site.r <= got.r)) {
    throw new LoraMismatchError(
      `the coordinator's adapter has r=${got.r}; this site says --lora.r ${site.r}: a site may train a rank from 1 up to the adapter's, not above`,
    );
  }
  if (site.targetModules !== undefined) {
    const want = [...site.targetModules].sort();
    if (want.join(',') !== got.targetModules.join(',')) {
      throw new LoraMismatchError(`the coordinator's adapter targets ${got.targetModules.join(',')}; this site says --lora.target-modules ${want.join(',')}`);
    }
  }
  if (site.dropout !== undefined && globalDropout !== undefined && site.dropout !== globalDropout) {
    throw new LoraMismatchError(`the coordinator's task plan has lora_dropout ${globalDropout}; this site says --lora.dropout ${site.dropout}`);
  }
  const all = got.layers.length === nLayer && got.layers.every((l, i) => l === i);
  const sameRank = site.r === undefined || site.r === got.r;
  return {
    r: got.r,
    alpha: (sameRank ? site.alpha : undefined) ?? globalAlpha ?? 2 * got.r,
    dropout: globalDropout ?? site.dropout ?? 0.05,
    targetModules: got.targetModules,
    ...(site.useRslora ? { useRslora: true } : {}),
    ...(all ? {} : { layersToTransform: got.layers }),
  };
}

/**
 * What a site stating a smaller --lora.r trains: its LoraConfig (alpha: the site's, by default the one that keeps
 * the global scaling, so padding is bit-exact) and ratio = s_site / s_global (rank-padding.ts); undefined when
 * the site trains the adapter's own rank.
 */
export function siteRankPlan(global: LoraConfig, site: SiteLoraOptions): { lora: LoraConfig; ratio: number } | undefined {
  if (site.r === undefined || site.r === global.r) return undefined;
  const s = loraScaling(global);
  const alpha = site.alpha ?? (global.useRslora ? s * Math.sqrt(site.r) : s * site.r);
  const lora: LoraConfig = { ...global, r: site.r, alpha };
  return { lora, ratio: site.alpha === undefined ? 1 : loraScaling(lora) / s };
}

/**
 * A Trainer whose LoRA settings follow the coordinator's adapter (one LoraSftTrainer per distinct layout). A site
 * with a smaller --lora.r trains that rank from the adapter's leading components and hands back the adapter's
 * layout, zero-padded (rank-padding.ts), with its rank in the outcome.
 */
export class TaskLoraTrainer implements Trainer {
  private readonly trainers = new Map<string, LoraSftTrainer>();
  /** The coordinator's lora_alpha from the last task plan (evaluation runs at the adapter's own rank and scaling). */
  private globalAlpha: number | undefined;
  /** The coordinator's LoRA dropout from the last task plan (absent from an older coordinator). */
  private globalDropout: number | undefined;
  /** A mismatch between the site's stated settings and the coordinator's: retrying cannot help. */
  fatal?: LoraMismatchError;
  /** The trainer of the last 'flora' task (it scores its own outcome with the stack it trained on). */
  private floraTrainer: LoraSftTrainer | undefined;

  constructor(private readonly opts: { readonly model: CausalLm; readonly data: SftData; readonly lora: SiteLoraOptions; readonly backend: string }) {}

  get backend(): string {
    return this.opts.backend;
  }

  private configFor(adapter: TensorList): LoraConfig {
    try {
      return loraConfigFromTask(adapter, this.opts.model.config.nLayer, this.opts.lora, this.globalAlpha, this.globalDropout);
    } catch (e) {
      if (e instanceof LoraMismatchError) this.fatal ??= e;
      throw e;
    }
  }

  private trainerWith(lora: LoraConfig): LoraSftTrainer {
    const key = JSON.stringify(lora);
    let t = this.trainers.get(key);
    if (!t) {
      t = new LoraSftTrainer({ model: this.opts.model, lora, ...this.opts.data });
      this.trainers.set(key, t);
    }
    return t;
  }

  async train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal, onStep?: (s: TrainStep) => void): Promise<TrainOutcome> {
    this.globalAlpha = plan.loraAlpha;
    this.globalDropout = plan.loraDropout;
    if (plan.loraAggregation === 'flora') return this.trainFlora(global, plan, signal, onStep);
    const lora = this.configFor(global);
    const small = siteRankPlan(lora, this.opts.lora);
    if (!small) return this.trainerWith(lora).train(global, plan, signal, onStep);
    // SCAFFOLD's control variates have the global adapter's shapes; a truncated rank has no place for them.
    if (plan.scaffold) throw new Error(`SCAFFOLD needs the global adapter's rank (${lora.r}); this site trains rank ${small.lora.r}`);
    const out = await this.trainerWith(small.lora).train(truncateToRank(global, small.lora.r, small.ratio), plan, signal, onStep);
    return { ...out, adapter: padToRank(out.adapter, global, small.ratio), loraRank: small.lora.r };
  }

  /**
   * 'flora': a fresh LoRA of the site's rank (its --lora.r, else flora_rank) trained on the merged version's stack by the
   * LoraSftTrainer of that rank (flora-site.ts floraRound); a rank above flora_rank is a mismatch retrying cannot fix.
   */
  private async trainFlora(stack: TensorList, plan: TrainingPlan, signal?: AbortSignal, onStep?: (s: TrainStep) => void): Promise<TrainOutcome> {
    let fresh: LoraConfig;
    try {
      // A stated --lora.dropout is a check against the plan's, as for any task (loraConfigFromTask).
      const { dropout } = this.opts.lora;
      if (dropout !== undefined && plan.loraDropout !== undefined && dropout !== plan.loraDropout) {
        throw new Error(`the coordinator's task plan has lora_dropout ${plan.loraDropout}; this site says --lora.dropout ${dropout}`);
      }
      fresh = floraFreshLora(plan, { r: this.opts.lora.r, alpha: this.opts.lora.alpha }, stackLayout(stack, this.opts.model.config.nLayer));
    } catch (e) {
      throw (this.fatal ??= new LoraMismatchError((e as Error).message));
    }
    this.floraTrainer = this.trainerWith(fresh);
    return this.floraTrainer.train(stack, plan, signal, onStep);
  }

  evaluate(adapter: TensorList, opts?: EvaluateOptions): Promise<Record<string, number>> {
    // Under 'flora': its own outcome (scored with the stack it trained on), or a candidate stack (opts.stack).
    if (this.floraTrainer?.evaluatesAsLocal(adapter)) return this.floraTrainer.evaluate(adapter);
    if (opts?.stack) return this.trainerWith(stackLoraConfig(adapter, stackLayout(adapter, this.opts.model.config.nLayer))).evaluate(adapter, opts);
    return this.trainerWith(this.configFor(adapter)).evaluate(adapter);
  }
}
