#!/usr/bin/env bash
# Quality run 12 on the GPU machine (bench/QUALITY.md "Run 12"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run12.sh
# Sized from run 11's rates (10 cells at once: a 50-site cell ~30 s a round, a light 5-site round ~8 s): 7 cells at a
# time, every one expected to finish well inside Q12_TIMEOUT (default 400 s; `timeout` ends a driver and its cells).
#   q12a: the demo's own size (5 sites, 10 rounds of 10 local steps, Dirichlet 0.5, 3 seeds) for today's default
#         (FedAvg, constant rate) against the cosine schedule and FedProx μ 0.1 with it: which default is best there.
#   q12b: the 50-site FedIT pair of run 11 over 12 rounds at a constant server rate, without noise and at ε ≈ 8.
# Everything lands in $OUT/q12.tar.gz, the drivers' tables also as $OUT/q12*.md.
set -u
W=/tmp/q12
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
T=${Q12_TIMEOUT:-400}
# Q12_EXTRA: flags appended to every driver (a CPU smoke check: --rounds 1 --cap-local-steps 1 --test-limit 20 ...).
X=(${Q12_EXTRA:-})
timeout $T node dist/bench/quality.js --rounds 10 --no-fed-eval --seeds 42,43,44 --splits dirichlet-0.5 \
  --configs fedavg,fedavg-cos,fedprox-0.1 --parallel 5 "${X[@]}" --out $W/q12a.json >$W/q12a.out 2>$W/q12a.log &
timeout $T node dist/bench/quality.js --rounds 12 --no-fed-eval --seeds 42 --splits dirichlet-0.5 \
  --configs n50-fedit2-c,dp8-n50-fedit2-c --parallel 2 "${X[@]}" --out $W/q12b.json >$W/q12b.out 2>$W/q12b.log &
wait
tar czf "$OUT/q12.tar.gz" -C /tmp q12
cp $W/*.md "$OUT/" 2>/dev/null
cat $W/*.out | grep -E "done in|FAILED"
for f in $W/*.log; do grep -E "round [0-9]+:" "$f" | awk '{print $1}' | sort -u | while read c; do grep "^$c " "$f" | grep -E "round [0-9]+:" | tail -n 1; done; done
