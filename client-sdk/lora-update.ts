// What a site uploads after training, by the round's LoRA aggregation (proto/model/lora-aggregation.ts): the
// delta of every tensor ('fedit'), or of the lora_B tensors only ('ffa', FFA-LoRA). Under 'ffa' lora_A must come
// back bit-identical: a trainer that moved it would make the uploaded B describe a product the site never
// trained, so the task fails with the reason instead. Under 'flora' no delta: the trained adapter IS the site's
// fresh factors (client-sdk/sft/flora-site.ts), which must target the global stack's modules.
import { subTensors, type NamedTensor, type TensorList } from '../proto/tensors';
import { isTrainable, type RoundLoraAggregation } from '../proto/model/lora-aggregation';
import { loraModules, uniformRank } from '../proto/model/lora-stack';

export class FrozenTensorChangedError extends Error {
  override name = 'FrozenTensorChangedError';
}

/** trained − global over the tensors the round takes (both sorted, same layout). */
export function updateToSend(trained: TensorList, global: TensorList, mode: RoundLoraAggregation): NamedTensor[] {
  if (mode === 'flora') return floraFactors(trained, global);
  const delta = subTensors(trained, global);
  if (mode === 'fedit') return delta;
  for (let k = 0; k < trained.length; k++) {
    if (isTrainable(trained[k].name, mode)) continue;
    const a = trained[k].data;
    const g = global[k].data;
    // Bitwise: -0 against +0 or a NaN payload would be a change the coordinator never sees.
    const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
    const ug = new Uint32Array(g.buffer, g.byteOffset, g.length);
    for (let i = 0; i < ua.length; i++) {
      if (ua[i] !== ug[i]) {
        throw new FrozenTensorChangedError(
          `the trainer changed ${trained[k].name}[${i}] (${g[i]} → ${a[i]}), which lora.aggregation '${mode}' keeps frozen: only lora_B may train`,
        );
      }
    }
  }
  return delta.filter((t) => isTrainable(t.name, mode));
}

/** 'flora': the fresh factors as they are, once they are seen to cover the stack's modules with its dimensions. */
function floraFactors(trained: TensorList, global: TensorList): NamedTensor[] {
  const mine = loraModules(trained);
  const theirs = loraModules(global);
  uniformRank(trained);
  const same =
    mine.length === theirs.length &&
    mine.every((m, i) => m.path === theirs[i].path && m.a.shape[1] === theirs[i].a.shape[1] && m.b.shape[0] === theirs[i].b.shape[0]);
  if (!same) throw new Error("lora.aggregation 'flora': the trained factors do not cover the global adapter's modules");
  return [...trained];
}
