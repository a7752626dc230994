// The end of a round: the candidate becomes a version. Its manifest is assembled here (the clients' mean metrics,
// the sites' federated evaluation, the optional server-side evaluator's held-out figures, seeds, config, the
// privacy and SecAgg records, the server optimiser and the early-stopping record) and handed to the store; after
// the commit the release pointer follows a new best version and early stopping may end the run.
import { PROTOCOL_VERSION } from '../proto/constants';
import { sortByName, type NamedTensor } from '../proto/tensors';
import type { Checkpoint, FederatedEvaluationRecord, Participant, PrivacyRecord, SecureAggregationRecord } from './checkpoints/types';
import { reconcileRelease, writeRelease } from './checkpoints/release';
import { configForManifest } from './config';
import { bestSetBy, nextBest, stopReason } from './evaluation/early-stopping';
import type { RoundContext } from './round-context';
import { clientMetricMeans } from './round-outcome';
import { deriveSeed } from './selection';
import { evaluatedAdapter } from './strategy/ema';
import { clientTraining } from './train-plan';
import { floraSeeds, versionAdapterConfig } from './flora-stack';

export interface CommitFields {
  readonly adapter: NamedTensor[];
  readonly round: number;
  readonly attempt: number;
  readonly participants: Participant[];
  readonly seeds: Record<string, number | Record<string, number>>;
  readonly secureAggregation?: SecureAggregationRecord;
  readonly privacy?: PrivacyRecord;
  readonly evaluation?: FederatedEvaluationRecord;
  readonly serverState?: readonly NamedTensor[];
}

/** Commits the next version after `prev` (null: version 0); its adapter comes back sorted by name. */
export async function commitVersion(ctx: RoundContext, prev: Checkpoint | null, f: CommitFields): Promise<Checkpoint> {
  const { d } = ctx;
  const cfg = d.config;
  const version = prev ? prev.manifest.version + 1 : 0;
  const metrics: Record<string, number> = clientMetricMeans(f.participants);
  if (f.evaluation) {
    metrics['eval.loss'] = f.evaluation.loss;
    if (f.evaluation.accuracy !== undefined) metrics['eval.accuracy'] = f.evaluation.accuracy;
  }
  if (d.evaluator) {
    try {
      // Under strategy.ema the version is scored as its average, the adapter it is released and exported as.
      const scored = evaluatedAdapter(f.adapter, f.serverState);
      for (const [k, v] of Object.entries(await d.evaluator(scored, version))) metrics[`heldout.${k}`] = v;
    } catch (e) {
      // Server-side evaluation is a record, not a gate: the version commits without heldout.* metrics.
      d.log('error', 'evaluator failed; committing without held-out metrics', { version, error: (e as Error).message });
    }
  }
  // The manifest's early-stopping record for the version being committed (evaluation/early-stopping.ts).
  const best = nextBest(cfg.earlyStopping, prev?.manifest.best, version, metrics);
  const ck = await d.store.commit({
    adapter: f.adapter,
    // Under 'flora' each version is a stack of its own rank, its scaling folded into lora_B (flora-stack.ts).
    adapterConfig: cfg.lora.aggregation === 'flora' ? versionAdapterConfig(d.adapterConfig, f.adapter) : d.adapterConfig,
    manifest: {
      runId: cfg.run.id,
      round: f.round,
      attempt: f.attempt,
      strategy: d.strategy.name,
      participants: f.participants,
      metrics,
      config: configForManifest(cfg),
      seeds: { run: cfg.run.seed, loraInit: deriveSeed(cfg.run.seed, 'lora-init'), ...d.extraSeeds, ...f.seeds, ...floraSeeds(cfg, f.seeds) },
      baseModel: d.baseModel,
      protocolVersion: PROTOCOL_VERSION,
      ...(f.secureAggregation ? { secureAggregation: f.secureAggregation } : {}),
      ...(f.privacy ? { privacy: f.privacy } : {}),
      ...(d.strategy.hyperParameters ? { serverOptimizer: { ...d.strategy.hyperParameters } } : {}),
      ...(f.round > 0 ? { clientTraining: clientTraining(cfg, f.round) } : {}),
      ...(f.evaluation ? { evaluation: f.evaluation } : {}),
      ...(best ? { best } : {}),
    },
    serverState: f.serverState,
  });
  return { ...ck, adapter: sortByName(ck.adapter) };
}

/** After a commit: the release pointer follows a new best version. Returns why early stopping ends the run, if it does. */
export async function afterCommit(ctx: RoundContext, ck: Checkpoint): Promise<string | null> {
  const m = ck.manifest;
  // Under earlyStopping.window the new best is the middle of the window this commit completed, an earlier version.
  if (m.best && bestSetBy(m.best, m.version)) {
    await writeRelease(ctx.d.config.run.dir, m.best.version);
    ctx.d.log('info', 'release pointer moved to the new best version', { version: m.best.version, metric: m.best.metric, value: m.best.value });
  }
  const earlyStop = stopReason(ctx.d.config.earlyStopping, m.best);
  if (earlyStop) ctx.d.log('info', earlyStop, { version: m.version, best: m.best?.version });
  return earlyStop;
}

/** On resuming from a stored version: the release pointer catches up; returns the early-stopping verdict so far. */
export async function resumeCommitted(ctx: RoundContext, stored: Checkpoint): Promise<string | null> {
  if (await reconcileRelease(ctx.d.config.run.dir, stored.manifest))
    ctx.d.log('warn', 'moved the release pointer to the best version, set by the commit just before the last process stopped', {
      version: stored.manifest.best?.version,
    });
  return stopReason(ctx.d.config.earlyStopping, stored.manifest.best);
}
