#!/usr/bin/env bash
# Quality run 16b on the GPU machine (bench/QUALITY.md "Run 16"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run16b.sh
# Run 16's recipe (`fedsgd-adambc-3e3-ema99`: FedSGD under FedAdam, η 0.003 cosine, 600 rounds, scored as the EMA
# of the global adapter, β 0.99) with federated validation on: every 20th round each site scores the candidate's
# average on 100 validation e-mails of its own, and the held-out set is scored in the same rounds, so the driver's
# stopping table says what the release pointer (lowest validation loss, patience 0) and early stopping (patience 5)
# would have picked, and how far under the best held-out accuracy seen. All three splits × seeds 42, 43, 44 (9
# processes). The sites' iterates are those of run 16 (validation does not touch training): the held-out figures
# in rounds that are multiples of 20 must repeat run 16's. The driver runs in its own process group, cut with its
# cells after Q16B_TIMEOUT (default 285 s); a cut cell's scored rounds stay in its log.
# Writes $OUT/q16d.tar.gz (JSON, log), $OUT/q16d.md (the driver's tables), $OUT/q16d-summary.txt.
set -u
W=/tmp/q16d
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
START=$(date +%s)
T=${Q16B_TIMEOUT:-285}
X=(${Q16B_EXTRA:-})
setsid node dist/bench/quality.js --rounds 600 --batch-size 32 --eval-every 20 --val-limit 100 \
  --seeds 42,43,44 --splits dirichlet-0.5,dirichlet-0.1,groups --configs fedsgd-adambc-3e3-ema99 --parallel 9 "${X[@]}" \
  --out $W/q16d.json >$W/q16d.out 2>$W/q16d.log &
PID=$!
(sleep "$T" && kill -TERM -- -"$PID" 2>/dev/null) &
KILLER=$!
wait "$PID"
kill "$KILLER" 2>/dev/null
tar czf "$OUT/q16d.tar.gz" -C /tmp q16d
cp $W/*.md "$OUT/" 2>/dev/null
grep -E "done in|FAILED" $W/q16d.out
# The driver's stopping table (release pointer and early stopping on the validation figures), then per cell.
sed -n '/ES val loss/,$p' $W/q16d.md 2>/dev/null
node dist/bench/quality-run16-summary.js $W/q16d.log | tee "$OUT/q16d-summary.txt"
echo "wall $(($(date +%s) - START)) s"
