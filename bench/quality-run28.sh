#!/usr/bin/env bash
# Run 28 (bench/QUALITY.md): mixed LoRA ranks, the case FLoRA stacking is for. The demo's federation (5 sites,
# Dirichlet 0.5, split seed 7, the demo GPT-2 base) at the demo's size (the classic recipe: FedAvg, 10 AdamW steps
# of 16 at 0.002 a round, LoRA dropout 0), lora.r 16 with alpha 32, one site at a smaller rank (--site-ranks), every
# cell a simulate process of its own, all at once, on tfjs (FEDTUNE_ENGINE unset: the engine refused 'flora' when
# this ran, so every arm trains on the same backend). The held-out 400 e-mails are scored every round.
#   Q28_CELLS  "arm:seed[:ranks] …"  arm = lora.aggregation (fedit, ffa, flora); ranks default Q28_RANKS
#   Q28_RANKS  default 4,16,16,16,16      Q28_ROUNDS default 20      Q28_DEADLINE seconds per cell, default 540
#   Q28_SPLIT  dirichlet-0.5 (default, the demo's), dirichlet-<alpha>, or groups (simulate --partition groups): run 29
#   Q28_ENGINE unset: tfjs; else FEDTUNE_ENGINE for every cell (f32, f16, tc: the WebGPU engine, which trains 'flora'
#              since 2026-11-30; a zero-padded site below lora.r still trains on tfjs, demo/site-trainer.ts)
# Writes $OUT/q28/<arm>-<seed>[-<ranks>].txt (simulate's own lines) and packs them into $OUT/q28.tar.gz.
set -u
case ${Q28_SPLIT:-dirichlet-0.5} in
  groups) split=(--partition groups) ;;
  dirichlet-*) split=(--alpha "${Q28_SPLIT#dirichlet-}") ;;
  *) echo "Q28_SPLIT is dirichlet-<alpha> or groups, not '$Q28_SPLIT'" >&2; exit 2 ;;
esac
out=${OUT:-bench-out}/q28
mkdir -p "$out"
for cell in ${Q28_CELLS:-fedit:42 ffa:42 flora:42 fedit:43 ffa:43 flora:43 fedit:44 ffa:44 flora:44}; do
  IFS=: read -r arm seed ranks <<<"$cell"
  name=$arm-$seed${ranks:+-${ranks//,/_}}
  env -u FEDTUNE_ENGINE ${Q28_ENGINE:+FEDTUNE_ENGINE=$Q28_ENGINE} FEDTUNE_LORA_AGGREGATION="$arm" FEDTUNE_LORA_R=16 FEDTUNE_LORA_ALPHA=32 FEDTUNE_LORA_DROPOUT=0 \
    timeout "${Q28_DEADLINE:-540}" node dist/examples/simulate.js --config docs/recipes/fedavg-classic.json5 --clients 5 \
    --rounds "${Q28_ROUNDS:-20}" --local-steps 10 --batch-size 16 --eval-every 1 --seed "$seed" "${split[@]}" \
    --site-ranks "${ranks:-${Q28_RANKS:-4,16,16,16,16}}" --deadline-ms 600000 --run-dir "/tmp/q28/${Q28_SPLIT:-dirichlet-0.5}-$name" >"$out/$name.txt" 2>&1 &
done
wait
tar -czf "$out.tar.gz" -C "$(dirname "$out")" q28 && rm -rf "$out"
