// What an operator watching a DP run sees of its privacy (the Prometheus series, the dashboard's panel): ε spent at
// δ after the latest committed version, the budget, how many more rounds the budget allows at the run's q and z, the
// clip norm the next round uses and z. All of it is public (every manifest carries it) and none of it depends on who
// or how many were in a Poisson-sampled round (ops/sample-secrecy.ts): ε depends only on q, z and the round count.
import type { Checkpoint, PrivacySegment } from '../checkpoints/types';
import type { CoordinatorConfig } from '../config-types';
import { PrivacyLedger } from '../privacy/ledger';
import { roundsLeft } from '../privacy/plan';
import { chargedSamplingRate } from '../privacy/sampling';

export interface PrivacyStatus {
  /** ε at `delta` after the latest committed version (the ledger's, as its manifest records it); null: unbounded. */
  readonly epsilon: number | null;
  readonly delta: number;
  /** privacy.epsilonBudget (0: none). */
  readonly epsilonBudget: number;
  /**
   * The most further rounds at `samplingRate` and `noiseMultiplier` whose ε stays ≤ the budget, every site surviving
   * each; null: no budget. Under SecAgg the last of them must also pass the check before a round, which charges the
   * round's worst case (as few survivors as the threshold lets it end with): so it is the largest k with ε after
   * k − 1 rounds at z and one at the worst case ≤ the budget.
   */
  readonly roundsLeft: number | null;
  /**
   * Under SecAgg (the latest version has a SecAgg record) with a budget: the most further rounds if every one ends
   * with only the threshold's t of its n selected sites, each such round charged z·√(t/n), the latest round's t and n
   * standing for the next ones'. Absent otherwise.
   */
  readonly roundsLeftAtThreshold?: number;
  /** C the next round clips to: adaptive clipping's C_{t+1} of the latest version, else privacy.clipNorm. */
  readonly clipNorm: number;
  readonly adaptiveClipping: boolean;
  /** z, what the accountant charges a round (under SecAgg with dropouts a round is charged its lower effective z). */
  readonly noiseMultiplier: number;
  /** q each further round is charged at: privacy.samplingRate under Poisson sampling, else 1. */
  readonly samplingRate: number;
}

type PrivacySection = Pick<CoordinatorConfig, 'privacy'>;

/** The privacy status after `latest` (cached per version: the accountant runs once per commit, not per scrape). */
export class PrivacyView {
  private last: { ck: Checkpoint; status: PrivacyStatus } | null = null;

  constructor(private readonly cfg: PrivacySection) {}

  /** undefined until the coordinator has read its run directory (the latest version is not known yet). */
  status(latest: Checkpoint | null): PrivacyStatus | undefined {
    if (!latest) return undefined;
    if (this.last?.ck !== latest) this.last = { ck: latest, status: this.compute(latest) };
    return this.last.status;
  }

  private compute(latest: Checkpoint): PrivacyStatus {
    const p = this.cfg.privacy;
    const record = latest.manifest.privacy;
    const ledger = new PrivacyLedger(p, latest.manifest);
    const epsilon = ledger.epsilon();
    const q = chargedSamplingRate(this.cfg);
    const z = p.noiseMultiplier;
    // Under SecAgg a round may end with as few as t of its n selected, each site adding 1/n of the noise: the
    // check before a round charges that worst case (round-privacy.ts beforeSecAgg). The latest round's t and n
    // stand for the next ones' (a selection of another size moves t/n a little).
    const sa = latest.manifest.secureAggregation;
    const worstZ = sa && sa.selected.length > 0 ? z * Math.sqrt(Math.min(1, sa.threshold / sa.selected.length)) : z;
    // ε after k more rounds is the ledger's own figure with more segments: the same sum the budget check makes.
    const seg = (zk: number, k: number): PrivacySegment[] => (k > 0 ? [{ samplingRate: q, noiseMultiplier: zk, rounds: k }] : []);
    const after = (k: number): number | null => ledger.epsilon(worstZ === z ? seg(z, k) : [...seg(z, k - 1), ...seg(worstZ, 1)]);
    const budgeted = p.epsilonBudget > 0;
    const spent = epsilon === null || epsilon > p.epsilonBudget;
    const left = !budgeted ? null : spent ? 0 : roundsLeft(after, p.epsilonBudget);
    const atThreshold = sa && budgeted ? (spent ? 0 : roundsLeft((k) => ledger.epsilon(seg(worstZ, k)), p.epsilonBudget)) : undefined;
    return {
      epsilon,
      delta: p.delta,
      epsilonBudget: p.epsilonBudget,
      roundsLeft: left,
      ...(atThreshold !== undefined ? { roundsLeftAtThreshold: atThreshold } : {}),
      clipNorm: (p.adaptiveClipping ? record?.adaptiveClipping?.nextClipNorm : undefined) ?? p.clipNorm,
      adaptiveClipping: p.adaptiveClipping,
      noiseMultiplier: z,
      samplingRate: q,
    };
  }
}
