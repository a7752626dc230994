// Compile-time check (tsc, no runtime): the configuration type derived from the convict schema has the
// types the code relies on: name lists become unions, other keys take the widened type of their default.
import type { CoordinatorConfig } from '../coordinator/config-types';
type Eq<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const checks: [
  Eq<CoordinatorConfig['auth']['mode'], 'enrolled' | 'tofu'>,
  Eq<CoordinatorConfig['strategy']['name'], 'fedavg' | 'fedavgm' | 'fedadam' | 'fedyogi' | 'fedadagrad' | 'scaffold'>,
  Eq<CoordinatorConfig['rounds']['total'], number>,
  Eq<CoordinatorConfig['lora']['targetModules'], readonly string[]>,
  Eq<CoordinatorConfig['auth']['allowList'], readonly string[]>,
  Eq<CoordinatorConfig['secagg']['enabled'], boolean>,
  Eq<CoordinatorConfig['log']['level'], 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'>,
  Eq<CoordinatorConfig['model']['dir'], string>,
] = [true, true, true, true, true, true, true, true];
export default checks;
