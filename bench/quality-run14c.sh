#!/usr/bin/env bash
# Quality run 14c on the GPU machine (bench/QUALITY.md "Run 14c"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run14c.sh
# Run 14b's steadier FedSGD cell (`fedsgd-adambc-3e3`: η 0.003, 600 rounds of 5 sites × 1 SGD step of 32) had run
# on `groups` only; here on the two Dirichlet splits, 3 seeds each (q14f, 6 processes), to see whether one FedSGD
# configuration reaches 98% of centralized on every split. Beside it (q14g), the centralized ceiling of Dirichlet 0.5
# on seeds 43 and 44 (it had one seed). Eight processes; each driver cut by `timeout` (Q14_TIMEOUT, default 300 s).
# Writes $OUT/q14c.tar.gz (JSON, logs), $OUT/q14f.md, q14g.md (the tables), $OUT/q14c-last.txt.
set -u
W=/tmp/q14c
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
T=${Q14_TIMEOUT:-300}
X=(${Q14_EXTRA:-})
timeout $T node dist/bench/quality.js --rounds 600 --batch-size 32 --eval-every 20 --no-fed-eval --val-limit 0 \
  --seeds 42,43,44 --splits dirichlet-0.1,dirichlet-0.5 --configs fedsgd-adambc-3e3 --parallel 6 "${X[@]}" \
  --out $W/q14f.json >$W/q14f.out 2>$W/q14f.log &
timeout $T node dist/bench/quality.js --rounds 30 --no-fed-eval --seeds 43,44 --splits dirichlet-0.5 \
  --configs central-cos --parallel 2 "${X[@]}" --out $W/q14g.json >$W/q14g.out 2>$W/q14g.log &
wait
tar czf "$OUT/q14c.tar.gz" -C /tmp q14c
cp $W/*.md "$OUT/" 2>/dev/null
cat $W/*.out | grep -E "done in|FAILED"
for f in $W/*.log; do
  for c in $(grep -E "round [0-9]+:" "$f" | awk '{print $1}' | sort -u); do
    echo "$(basename "$f" .log) $(grep "^$c " "$f" | grep -E "round [0-9]+:" | tail -n 1)"
  done
done | tee "$OUT/q14c-last.txt"
