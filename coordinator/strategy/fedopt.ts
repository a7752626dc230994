// Adaptive server optimisers of Reddi et al. 2021, "Adaptive Federated Optimization" (ICLR), Algorithm 2, over the
// mean update Δ (the pseudo-gradient), per value, in float64:
//   m ← β1·m + (1 − β1)·Δ
//   FedAdagrad: v ← v + Δ²
//   FedAdam:    v ← β2·v + (1 − β2)·Δ²
//   FedYogi:    v ← v − (1 − β2)·Δ²·sign(v − Δ²)
//   w ← w + η·m / (√v + τ)
// m starts at 0 and v at τ² (the paper's v₋₁ ≥ τ², at its smallest). As in the paper and unlike Flower, there is no
// bias correction (Flower's FedAdam scales η by √(1 − β2^(t+1)) / (1 − β1^(t+1)), and starts v at 0).
// strategy.biasCorrection adds it, as PyTorch's Adam writes it (t = the round, from 1; v starts at 0):
//   w ← w + η·(m/(1 − β1^t)) / (√(v/(1 − β2^t)) + τ)          (FedAdagrad: no β2, so v is not rescaled)
// Why: over one-step rounds of client SGD at rate λ the mean update is −λ times the pooled-data gradient, so with
// τ = λ·ε this is Adam (lr η, eps ε) on the pooled data; without the correction the early steps are
// (1 − β1^t)/√(1 − β2^t) times Adam's: up to 6.5× at β2 0.999 (t ≈ 10), still 3.2× at t = 100.
// strategy.noiseAware (FedAdam under DP-FedAvg; DP-AdamBC, Tang et al. 2024): the mean update carries Gaussian noise
// of known variance ν_t = (σ/n_t)² per value (σ = z·C on the sum of n_t updates), which inflates v by its running
// average s. So s is kept beside v, s ← β2·s + (1 − β2)·ν_t (from 0; its scalar is checkpointed as NOISE_KEY), and
// the step divides by √max(v̂ − ŝ, floor·ŝ) + τ (v̂, ŝ: v and s over 1 − β2^t). Why: a value whose signal is under the
// noise otherwise steps at η·signal/σ, a fraction of the noiseless optimiser's η·signal/|signal|; with ŝ taken out its
// steps on the signal are the noiseless ones in expectation, the noise's share of them scaled up alike.
// m and v are rounded to float32 once per round when stored (optimizer-state.ts); the step uses them unrounded.
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { FedAvg } from './fedavg';
import { stepFedOpt, type FedOptConstants, type SecondMoment } from './fedopt-kernel';
import { stepAlongMeanDelta } from './mean-delta';
import { OptimizerState } from './optimizer-state';
import { DEFAULT_SERVER_LEARNING_RATE, NOISE_FLOOR, checkSettings, type ServerOptimizerSettings } from './settings';
import { serverRateAt, type ServerScheduleSettings } from './server-schedule';
import type { ServerState, WeightedSum } from './strategy';

type Settings = Pick<
  ServerOptimizerSettings,
  'serverLearningRate' | 'beta1' | 'beta2' | 'tau' | 'serverSchedule' | 'roundsTotal' | 'biasCorrection' | 'noiseAware' | 'noiseFloor'
>;

/** The server-state scalar holding strategy.noiseAware's running average of the noise's variance on the mean. */
export const NOISE_KEY = 'noise/v';

abstract class FedOpt extends FedAvg {
  readonly hyperParameters: Readonly<Record<string, number>>;
  protected readonly eta: number;
  protected readonly beta1: number;
  protected readonly beta2: number;
  protected readonly tau: number;
  private readonly biasCorrection: boolean;
  /** strategy.noiseAware's floor (a fraction of the noise's variance), or undefined when the correction is off. */
  private readonly noiseFloor: number | undefined;
  private readonly schedule: ServerScheduleSettings;

  /** `usesBeta2`: FedAdagrad has no β2, so none is recorded for it. */
  constructor(
    private readonly label: string,
    s: Settings,
    usesBeta2: boolean,
  ) {
    super();
    this.eta = s.serverLearningRate || DEFAULT_SERVER_LEARNING_RATE.adaptive;
    this.beta1 = s.beta1;
    this.beta2 = usesBeta2 ? s.beta2 : 0;
    this.tau = s.tau;
    this.biasCorrection = s.biasCorrection === true;
    this.schedule = { serverSchedule: s.serverSchedule, roundsTotal: s.roundsTotal };
    checkSettings(label, { serverLearningRate: this.eta, momentum: 0, beta1: this.beta1, beta2: this.beta2, tau: this.tau });
    if (s.noiseAware) {
      if (label !== 'FedAdam') throw new RangeError(`${label}: strategy.noiseAware corrects FedAdam's second moment only`);
      const floor = s.noiseFloor ?? NOISE_FLOOR;
      if (!(floor > 0 && floor <= 1)) throw new RangeError(`${label}: noiseFloor = ${floor}; must be in (0, 1]`);
      this.noiseFloor = floor;
    }
    // The manifest records biasCorrection only when on, so manifests of runs without it read as before.
    this.hyperParameters = {
      serverLearningRate: this.eta,
      beta1: this.beta1,
      ...(usesBeta2 ? { beta2: this.beta2 } : {}),
      tau: this.tau,
      ...(this.biasCorrection ? { biasCorrection: 1 } : {}),
      ...(this.noiseFloor !== undefined ? { noiseAware: 1, noiseFloor: this.noiseFloor } : {}),
    };
  }

  /** 1 − β1^t and 1 − β2^t in round t (1 and 1 without bias correction; bc2 is 1 for FedAdagrad, which has no β2). */
  private biasCorrections(round: number | undefined): { bc1: number; bc2: number } {
    if (!this.biasCorrection) return { bc1: 1, bc2: 1 };
    if (!(round !== undefined && Number.isSafeInteger(round) && round >= 1)) {
      throw new Error(`${this.label}: strategy.biasCorrection needs the round being aggregated (from 1); got ${round}`);
    }
    return { bc1: 1 - this.beta1 ** round, bc2: this.beta2 > 0 ? 1 - this.beta2 ** round : 1 };
  }

  /** The next second moment from the last one and Δ² (all float64). */
  protected abstract secondMoment(v: number, d2: number): number;
  /** The same second moment in the WebAssembly close (fedopt-kernel.ts). */
  protected abstract readonly secondMomentKind: SecondMoment;
  /** False: the JavaScript loop below only (the reference the tests hold the module to). */
  protected readonly closeInWasm: boolean = true;

  override aggregate(global: TensorList, sum: WeightedSum, state?: ServerState): NamedTensor[] {
    const st = new OptimizerState(this.label, global, state);
    const { beta1, tau } = this;
    const eta = serverRateAt(this.label, this.eta, this.schedule, state?.round);
    const { bc1, bc2 } = this.biasCorrections(state?.round);
    const v0 = this.biasCorrection ? 0 : tau * tau;
    // The noise's running variance: ŝ, subtracted from every v̂, and the floor under the difference (0, 0: no correction).
    let sHat = 0;
    let floor = 0;
    if (this.noiseFloor !== undefined) {
      if (!(sum.noiseStd !== undefined && sum.noiseStd > 0))
        throw new Error(`${this.label}: strategy.noiseAware needs a sum that carries differential privacy noise of known σ (privacy.enabled)`);
      const nu = (sum.noiseStd / sum.totalWeight) ** 2;
      const s = this.beta2 * (st.readScalar(NOISE_KEY) ?? 0) + (1 - this.beta2) * nu;
      st.writeScalar(NOISE_KEY, s);
      sHat = s / bc2;
      floor = this.noiseFloor * sHat;
    }
    // The loop's constants as it evaluates them, for the same bits in the WebAssembly close (fedopt-kernel.ts).
    const k: FedOptConstants = {
      mode: this.secondMomentKind,
      beta1,
      oneMinusBeta1: 1 - beta1,
      beta2: this.beta2,
      oneMinusBeta2: 1 - this.beta2,
      bc1,
      bc2,
      sHat,
      floor,
      eta,
      tau,
    };
    const direct = (s: Float64Array, g: Float32Array, denom: number, next: Float32Array, name: string): boolean => {
      if (!this.closeInWasm) return false;
      const prior = { mPrev: st.read('m', name, g.length), vPrev: st.read('v', name, g.length), v0 };
      const m = new Float32Array(g.length);
      const v = new Float32Array(g.length);
      if (!stepFedOpt(k, s, g, denom, prior, { m, v, next })) return false;
      st.write('m', name, m);
      st.write('v', name, v);
      return true;
    };
    const out = stepAlongMeanDelta(
      this.label,
      global,
      sum,
      (name, g, delta, next) => {
        const mPrev = st.read('m', name, g.length);
        const vPrev = st.read('v', name, g.length);
        const m = new Float64Array(g.length);
        const v = new Float64Array(g.length);
        for (let j = 0; j < g.length; j++) {
          const d = delta[j];
          m[j] = beta1 * (mPrev ? mPrev[j] : 0) + (1 - beta1) * d;
          v[j] = this.secondMoment(vPrev ? vPrev[j] : v0, d * d);
          // Without bias correction bc1 = bc2 = 1 and both divisions are exact: Algorithm 2 bit for bit.
          const vHat = sHat > 0 ? Math.max(v[j] / bc2 - sHat, floor) : v[j] / bc2;
          next[j] = g[j] + (eta * (m[j] / bc1)) / (Math.sqrt(vHat) + tau);
        }
        st.write('m', name, m);
        st.write('v', name, v);
      },
      direct,
    );
    st.commit(state!, ['m', 'v']);
    return out;
  }
}

export class FedAdagrad extends FedOpt {
  override readonly name: string = 'fedadagrad';
  constructor(s: Omit<Settings, 'beta2'>) {
    super('FedAdagrad', { ...s, beta2: 0 }, false);
  }
  protected readonly secondMomentKind = 'adagrad';
  protected secondMoment(v: number, d2: number): number {
    return v + d2;
  }
}

export class FedAdam extends FedOpt {
  override readonly name: string = 'fedadam';
  constructor(s: Settings) {
    super('FedAdam', s, true);
  }
  protected readonly secondMomentKind = 'adam';
  protected secondMoment(v: number, d2: number): number {
    return this.beta2 * v + (1 - this.beta2) * d2;
  }
}

export class FedYogi extends FedOpt {
  override readonly name: string = 'fedyogi';
  constructor(s: Settings) {
    super('FedYogi', s, true);
  }
  protected readonly secondMomentKind = 'yogi';
  protected secondMoment(v: number, d2: number): number {
    return v - (1 - this.beta2) * d2 * Math.sign(v - d2);
  }
}
