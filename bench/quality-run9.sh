#!/usr/bin/env bash
# Quality run 9 on the GPU machine (bench/QUALITY.md "Run 9"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run9.sh
# Three drivers side by side (12 cells on 16 cores), each cut at 500 s by `timeout` (which ends its cells too):
# every finished cell is in the drivers' JSON, an unfinished one's curve in its log. Everything lands in
# $OUT/q9.tar.gz, the drivers' tables also as $OUT/q9*.md.
set -u
W=/tmp/q9
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
C=(--rounds 30 --seeds 42 --val-limit 100)
T=${Q9_TIMEOUT:-500}
# Q9_EXTRA: flags appended to every driver (a CPU smoke check: --rounds 1 --cap-local-steps 1 --test-limit 20 ...).
X=(${Q9_EXTRA:-})
timeout $T node dist/bench/quality.js "${C[@]}" --splits dirichlet-0.5,dirichlet-0.1 \
  --configs prox-avgm-k50,prox-avgm8-k50,prox-k100,prox-eta15-k50 --parallel 8 "${X[@]}" --out $W/q9a.json >$W/q9a.out 2>$W/q9a.log &
timeout $T node dist/bench/quality.js "${C[@]}" --splits groups --configs prox1-k50,prox1-adam-k50 --parallel 2 "${X[@]}" \
  --out $W/q9b.json >$W/q9b.out 2>$W/q9b.log &
# The DP pair without federated evaluation (50 sites' validation passes; early stopping is not its question).
timeout $T node dist/bench/quality.js "${C[@]}" --no-fed-eval --splits dirichlet-0.5 --configs ffa-r2-n50,dp8-r2-n50 \
  --parallel 2 "${X[@]}" --out $W/q9c.json >$W/q9c.out 2>$W/q9c.log &
wait
tar czf "$OUT/q9.tar.gz" -C /tmp q9
cp $W/*.md "$OUT/" 2>/dev/null
cat $W/*.out | grep -E "done in|FAILED" ; tail -n 3 $W/*.log
