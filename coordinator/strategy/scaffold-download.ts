// The server control variate a SCAFFOLD site downloads (DownloadRequest.control_variate): c of the requested
// version over the tensors its sites train (the whole adapter, or lora_B only under 'ffa'), zeros before the
// first SCAFFOLD round. A run that is not SCAFFOLD has none to give.
import { ProtocolError, status } from '../../proto/errors';
import type { NamedTensor } from '../../proto/tensors';
import type { Checkpoint } from '../checkpoints/types';
import type { CoordinatorConfig } from '../config-types';
import { roundAggregation, uploadLayout } from '../lora-aggregation';
import { controlVariateOf } from './scaffold';

export function controlVariateDownload(cfg: Pick<CoordinatorConfig, 'strategy' | 'lora' | 'secagg' | 'privacy'>, ck: Checkpoint): NamedTensor[] {
  if (cfg.strategy.name !== 'scaffold') {
    throw new ProtocolError(status.FAILED_PRECONDITION, `this run's strategy is '${cfg.strategy.name}': it keeps no SCAFFOLD control variate to download`);
  }
  return controlVariateOf(uploadLayout(ck.adapter, roundAggregation(cfg)), ck.serverState);
}
