#!/usr/bin/env bash
# Quality run 16 on the GPU machine (bench/QUALITY.md "Run 16"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run16.sh
# Call A (q16a, 9 processes): `fedsgd-adambc-3e3-ema99` — runs 14b-14c's FedSGD under FedAdam (η 0.003, cosine, 600
# rounds, 5 sites × 1 SGD step of 32) scored as the server's EMA of the global adapter (strategy.ema 0.99) — on all
# three splits × seeds 42, 43, 44, held-out scored every 10 rounds. Then call B (q16b, 5 processes, in the time
# left): the same average over η 0.005 and 400 rounds (run 14's rate) on Dirichlet 0.5 × 3 seeds and one seed of
# groups and Dirichlet 0.1. Each driver runs in its own process group, cut with its cells (A: Q16_TIMEOUT_A,
# default 340 s; B: what is left of Q16_BUDGET, default 430 s): a cut cell's scored rounds stay in its log, and
# q16-summary.txt reads them from there; no cell of A outlives its cut to slow B down.
# Writes $OUT/q16.tar.gz (JSON, logs), $OUT/q16a.md, q16b.md (the driver's tables), $OUT/q16-summary.txt.
set -u
W=/tmp/q16
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
START=$(date +%s)
TA=${Q16_TIMEOUT_A:-340}
BUDGET=${Q16_BUDGET:-430}
X=(${Q16_EXTRA:-})
. bench/quality-cut.sh # cut SECONDS CMD...: the command's process group ended after SECONDS
cut $TA node dist/bench/quality.js --rounds 600 --batch-size 32 --eval-every 10 --no-fed-eval --val-limit 0 \
  --seeds 42,43,44 --splits dirichlet-0.5,dirichlet-0.1,groups --configs fedsgd-adambc-3e3-ema99 --parallel 9 "${X[@]}" \
  --out $W/q16a.json >$W/q16a.out 2>$W/q16a.log
TB=$((BUDGET - ($(date +%s) - START)))
if [ "$TB" -gt 60 ]; then
  cut $TB node dist/bench/quality.js --rounds 400 --batch-size 32 --eval-every 10 --no-fed-eval --val-limit 0 \
    --seeds 42,43,44 --splits dirichlet-0.5 --configs fedsgd-adambc-5e3-ema99 --parallel 5 "${X[@]}" \
    --out $W/q16b.json >$W/q16b.out 2>$W/q16b.log &
  cut $TB node dist/bench/quality.js --rounds 400 --batch-size 32 --eval-every 10 --no-fed-eval --val-limit 0 \
    --seeds 42 --splits groups,dirichlet-0.1 --configs fedsgd-adambc-5e3-ema99 --parallel 2 "${X[@]}" \
    --out $W/q16c.json >$W/q16c.out 2>$W/q16c.log &
  wait
else
  echo "call B skipped: ${TB} s left"
fi
tar czf "$OUT/q16.tar.gz" -C /tmp q16
cp $W/*.md "$OUT/" 2>/dev/null
cat $W/*.out | grep -E "done in|FAILED"
node dist/bench/quality-run16-summary.js $W/*.log | tee "$OUT/q16-summary.txt"
echo "wall $(($(date +%s) - START)) s"
