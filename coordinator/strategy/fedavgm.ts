// FedAvgM (Hsu et al. 2019, "Measuring the Effects of Non-Identical Data Distribution…"): server momentum over
// the mean update Δ. Per value, in float64:  buf ← β·buf + Δ;  w ← w + η·buf  (buf starts at 0, so the first
// round moves by η·Δ). This is Flower's FedAvgM (SGD with momentum on the pseudo-gradient −Δ, no Nesterov) with
// the sign folded in. With β = 0 and η = 1 it is FedAvg, bit for bit: w + 1·(0·0 + Δ) = w + Δ in float64.
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { FedAvg } from './fedavg';
import { stepAlongMeanDelta } from './mean-delta';
import { OptimizerState } from './optimizer-state';
import { DEFAULT_SERVER_LEARNING_RATE, checkSettings, type ServerOptimizerSettings } from './settings';
import { serverRateAt, type ServerScheduleSettings } from './server-schedule';
import type { ServerState, WeightedSum } from './strategy';

export class FedAvgM extends FedAvg {
  override readonly name: string = 'fedavgm';
  readonly hyperParameters: Readonly<{ serverLearningRate: number; momentum: number }>;

  private readonly schedule: ServerScheduleSettings;

  constructor(s: Pick<ServerOptimizerSettings, 'serverLearningRate' | 'momentum' | 'serverSchedule' | 'roundsTotal'>) {
    super();
    this.schedule = { serverSchedule: s.serverSchedule, roundsTotal: s.roundsTotal };
    const eta = s.serverLearningRate || DEFAULT_SERVER_LEARNING_RATE.fedavgm(s.momentum);
    checkSettings('FedAvgM', { serverLearningRate: eta, momentum: s.momentum, beta1: 0, beta2: 0, tau: 1 });
    this.hyperParameters = { serverLearningRate: eta, momentum: s.momentum };
  }

  override aggregate(global: TensorList, sum: WeightedSum, state?: ServerState): NamedTensor[] {
    const st = new OptimizerState('FedAvgM', global, state);
    const { momentum: beta } = this.hyperParameters;
    const eta = serverRateAt('FedAvgM', this.hyperParameters.serverLearningRate, this.schedule, state?.round);
    const out = stepAlongMeanDelta('FedAvgM', global, sum, (name, g, delta, next) => {
      const prev = st.read('momentum', name, g.length);
      const buf = new Float64Array(g.length);
      for (let j = 0; j < g.length; j++) {
        buf[j] = beta * (prev ? prev[j] : 0) + delta[j];
        next[j] = g[j] + eta * buf[j];
      }
      st.write('momentum', name, buf);
    });
    st.commit(state!, ['momentum']);
    return out;
  }
}
