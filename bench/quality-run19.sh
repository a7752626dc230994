#!/usr/bin/env bash
# Quality run 19 on the GPU machine (bench/QUALITY.md "Run 19"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run19.sh
# The confirmation, on fresh seeds 45, 46, 47 × all three splits (9 processes), of the release rule chosen offline on
# run 16b (`fedsgd-adambc-3e3-ema99-accw5`: run 16's recipe, released by validation accuracy, the mean of 5
# evaluations naming the middle one). The sites score every validation e-mail they hold (--val-limit 1000: ~515
# pooled, each site's share as in the population) every 20 rounds; the held-out set (400 e-mails) is scored in the
# same rounds (run 16b's cadence), and which of its e-mails each version got right is kept (--keep-correct) for the
# noise-floor bootstrap in quality-run19-table.ts. The driver runs in its own process group, cut with its cells
# after Q19_CUT seconds (default 315); a cut cell's scored rounds stay in its log.
# Call 1 (Q19_LOCAL=1; held-out every 10 via Q19A_EXTRA="--eval-every 10 --fed-eval-every 20") also ran run 3's
# local-only arm beside it (`local`, seeds 42-44 × 3 splits, 3 at a time): 12 processes, and neither driver
# finished in 370 s (QUALITY.md says what it left).
# Writes $OUT/q19.tar.gz (JSON, logs), $OUT/q19a.md (the driver's tables), $OUT/q19-summary.txt.
set -u
W=/tmp/q19
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
START=$(date +%s)
CUT=${Q19_CUT:-315}
XA=(${Q19A_EXTRA:-})
XB=(${Q19B_EXTRA:-})
. bench/quality-cut.sh # cut SECONDS CMD...: the command's process group ended after SECONDS
cut $CUT node dist/bench/quality.js --rounds 600 --batch-size 32 --eval-every 20 --val-limit 1000 --keep-correct \
  --seeds 45,46,47 --splits dirichlet-0.5,dirichlet-0.1,groups --configs fedsgd-adambc-3e3-ema99-accw5 --parallel 9 "${XA[@]}" \
  --out $W/q19a.json >$W/q19a.out 2>$W/q19a.log &
if [ "${Q19_LOCAL:-0}" = 1 ]; then
  cut $CUT node dist/bench/quality.js --rounds 30 --no-fed-eval --val-limit 0 \
    --seeds 42,43,44 --splits dirichlet-0.1,dirichlet-0.5,groups --configs local --parallel 3 "${XB[@]}" \
    --out $W/q19b.json >$W/q19b.out 2>$W/q19b.log &
fi
wait
tar czf "$OUT/q19.tar.gz" -C /tmp q19
cp $W/*.md "$OUT/" 2>/dev/null
cat $W/*.out | grep -E "done in|FAILED"
# The picks table (the bootstrap's noise floor is computed afterwards, off the device: --reps 0).
node dist/bench/quality-run19-table.js $W/q19a.json --reps 0 2>&1 | tee "$OUT/q19-summary.txt"
echo "wall $(($(date +%s) - START)) s"
