// `fedtune privacy plan`: what a DP configuration will spend, before the run starts. It loads the configuration as
// `fedtune coordinator` would (--config FILE, FEDTUNE_* variables, --section.key flags) and prints, from the same
// accountant the run's ledger charges rounds with (privacy/plan.ts): ε at δ after rounds.total, the rounds the budget
// allows, and the smallest z that keeps ε within a target (--epsilon, default the budget) by rounds.total. Each
// round is charged at q = privacy.samplingRate under Poisson sampling and q = 1 otherwise (privacy/ledger.ts says why).
import type { Command } from 'commander';
import { loadConfig } from '../config';
import type { CoordinatorConfig } from '../config-types';
import { epsilonAfter, noiseForEpsilon, roundsWithin } from '../privacy/plan';
import { chargedSamplingRate, isSampled } from '../privacy/sampling';

export interface PrivacyPlan {
  readonly samplingRate: number;
  /** Why each round is charged at that q. */
  readonly sampling: 'poisson' | 'selection';
  readonly noiseMultiplier: number;
  readonly delta: number;
  readonly rounds: number;
  /** ε after `rounds` at z; null: unbounded. */
  readonly epsilon: number | null;
  readonly epsilonBudget: number;
  /** The rounds the budget allows at z; null without a budget. */
  readonly roundsWithinBudget: number | null;
  /** The target ε and the smallest z (0.001 grid) keeping ε within it by `rounds`; null without a target. */
  readonly target: { readonly epsilon: number; readonly noiseMultiplier: number } | null;
  /** secagg.enabled: a round that ends with fewer sites is charged less noise than z (the plan's figures assume none drop). */
  readonly secureAggregation: boolean;
}

/** The plan of a loaded configuration; `targetEpsilon` defaults to privacy.epsilonBudget (none when 0). */
export function privacyPlan(cfg: CoordinatorConfig, targetEpsilon?: number): PrivacyPlan {
  const p = cfg.privacy;
  if (!p.enabled) throw new Error('privacy.enabled is off: the run adds no noise and spends no ε to plan');
  const regime = { samplingRate: chargedSamplingRate(cfg), delta: p.delta };
  const rounds = cfg.rounds.total;
  const e = epsilonAfter(regime, p.noiseMultiplier, rounds);
  const target = targetEpsilon ?? (p.epsilonBudget > 0 ? p.epsilonBudget : undefined);
  return {
    samplingRate: regime.samplingRate,
    sampling: isSampled(cfg) ? 'poisson' : 'selection',
    noiseMultiplier: p.noiseMultiplier,
    delta: p.delta,
    rounds,
    epsilon: Number.isFinite(e) ? e : null,
    epsilonBudget: p.epsilonBudget,
    roundsWithinBudget: p.epsilonBudget > 0 ? roundsWithin(regime, p.noiseMultiplier, p.epsilonBudget) : null,
    target: target === undefined ? null : { epsilon: target, noiseMultiplier: noiseForEpsilon(regime, rounds, target) },
    secureAggregation: cfg.secagg.enabled,
  };
}

/** The plan as the lines an operator reads. */
export function formatPlan(plan: PrivacyPlan): string {
  const eps = (e: number | null): string => (e === null ? 'unbounded' : e.toFixed(2));
  const why =
    plan.sampling === 'poisson'
      ? 'privacy.sampling poisson: each round is charged at privacy.samplingRate'
      : 'privacy.sampling selection: the manifest names who took part, so each round is charged at q = 1';
  const lines = [`q ${plan.samplingRate} (${why}), z ${plan.noiseMultiplier}, δ ${plan.delta}`, `ε after rounds.total (${plan.rounds}): ${eps(plan.epsilon)}`];
  const k = plan.roundsWithinBudget;
  if (k !== null) lines.push(`the budget ε ${plan.epsilonBudget} allows ${k} round${k === 1 ? '' : 's'} at z ${plan.noiseMultiplier}`);
  if (plan.target) lines.push(`ε ≤ ${plan.target.epsilon} by round ${plan.rounds} needs z ≥ ${plan.target.noiseMultiplier} (privacy.noiseMultiplier)`);
  if (plan.secureAggregation) lines.push('secagg.enabled: a round that ends with t of its n sites is charged z·√(t/n), so fewer rounds fit if sites drop out');
  return `${lines.join('\n')}\n`;
}

export function addPrivacyCommand(program: Command): void {
  const privacy = program.command('privacy').description("Plan a differentially private run's ε before it starts");
  privacy
    .command('plan')
    .description('ε after rounds.total, the rounds the budget allows, and the z a target ε needs (config as for `fedtune coordinator`)')
    .option('--config <file>', 'JSON configuration file')
    .option('--epsilon <e>', 'target ε by rounds.total (default: privacy.epsilonBudget)')
    .option('--json', 'print the plan as JSON')
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .action((opts: { config?: string; epsilon?: string; json?: boolean }, cmd: Command) => {
      const target = opts.epsilon === undefined ? undefined : Number(opts.epsilon);
      if (target !== undefined && !(target > 0 && Number.isFinite(target))) throw new Error(`--epsilon ${opts.epsilon}: must be a positive number`);
      const plan = privacyPlan(loadConfig({ file: opts.config, env: process.env, args: cmd.args }), target);
      process.stdout.write(opts.json ? `${JSON.stringify(plan)}\n` : formatPlan(plan));
    });
}
