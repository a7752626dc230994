#!/usr/bin/env bash
# Quality run 11 on the GPU machine (bench/QUALITY.md "Run 11"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run11.sh
# Three drivers side by side, 10 cells on 16 cores (run 10's 8 cells of 30 rounds × 250 site-steps took 287 s), each
# cut at Q11_TIMEOUT s by `timeout` (which ends its cells too): finished cells are in the drivers' JSON, an
# unfinished one's curve in its log. Everything lands in $OUT/q11.tar.gz, the drivers' tables also as $OUT/q11*.md.
#   q11a: the 50-site pair that DP is judged against, and its DP twins at ε ≈ 8 (bench/quality-configs-run11.ts):
#         20 rounds of 4 local steps (200 site-steps a round), no federated evaluation (50 sites' passes).
#   q11b: FedSGD with FedAdam on `groups` and Dirichlet 0.1: 80 cheap rounds (5 sites × 5 SGD steps).
#   q11c: serverSchedule 'cosine' on run 10's steadiest recipe, both Dirichlet splits.
set -u
W=/tmp/q11
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
T=${Q11_TIMEOUT:-395}
# Q11_EXTRA: flags appended to every driver (a CPU smoke check: --rounds 1 --cap-local-steps 1 --test-limit 20 ...).
X=(${Q11_EXTRA:-})
timeout $T node dist/bench/quality.js --rounds 20 --no-fed-eval --seeds 42 --splits dirichlet-0.5 \
  --configs n50-ffa2,n50-fedit2,dp8-n50-ffa2,dp8-n50-fedit2 --parallel 4 "${X[@]}" --out $W/q11a.json >$W/q11a.out 2>$W/q11a.log &
timeout $T node dist/bench/quality.js --rounds 80 --no-fed-eval --seeds 42 --splits groups,dirichlet-0.1 \
  --configs fedsgd-adam1,fedsgd-adam2 --parallel 4 "${X[@]}" --out $W/q11b.json >$W/q11b.out 2>$W/q11b.log &
timeout $T node dist/bench/quality.js --rounds 30 --val-limit 100 --seeds 42 --splits dirichlet-0.5,dirichlet-0.1 \
  --configs prox-avgm8-k50-scos --parallel 2 "${X[@]}" --out $W/q11c.json >$W/q11c.out 2>$W/q11c.log &
wait
tar czf "$OUT/q11.tar.gz" -C /tmp q11
cp $W/*.md "$OUT/" 2>/dev/null
cat $W/*.out | grep -E "done in|FAILED"
for f in $W/*.log; do grep -E "round [0-9]+:" "$f" | awk '{print $1}' | sort -u | while read c; do grep "^$c " "$f" | grep -E "round [0-9]+:" | tail -n 1; done; done
