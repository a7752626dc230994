#!/usr/bin/env bash
# Quality run 10 on the GPU machine (bench/QUALITY.md "Run 10"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run10.sh
# Run 9's steadiest recipe (`prox-avgm8-k50`) on both Dirichlet splits with 3 seeds, and more seeds of the centralized
# ceiling on Dirichlet 0.1 (`central-cos`, one seed until now): 8 cells on 16 cores (run 9's 12, two of them 50-site
# federations, managed ~20 rounds in 500 s; runs 6-8's 12 ordinary cells 30 rounds in 400 s). Each driver is cut at Q10_TIMEOUT s by `timeout`
# (which ends its cells too): finished cells are in the drivers' JSON, an unfinished one's curve in its log.
# Everything lands in $OUT/q10.tar.gz, the drivers' tables also as $OUT/q10*.md.
set -u
W=/tmp/q10
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
T=${Q10_TIMEOUT:-440}
# Q10_EXTRA: flags appended to every driver (a CPU smoke check: --rounds 1 --cap-local-steps 1 --test-limit 20 ...).
X=(${Q10_EXTRA:-})
timeout $T node dist/bench/quality.js --rounds 30 --val-limit 100 --seeds 42,43,44 --splits dirichlet-0.5,dirichlet-0.1 \
  --configs prox-avgm8-k50 --parallel 6 "${X[@]}" --out $W/q10a.json >$W/q10a.out 2>$W/q10a.log &
# The ceiling needs no validation figures (early stopping is not its question).
timeout $T node dist/bench/quality.js --rounds 30 --no-fed-eval --seeds 43,44 --splits dirichlet-0.1 \
  --configs central-cos --parallel 2 "${X[@]}" --out $W/q10b.json >$W/q10b.out 2>$W/q10b.log &
wait
tar czf "$OUT/q10.tar.gz" -C /tmp q10
cp $W/*.md "$OUT/" 2>/dev/null
cat $W/*.out | grep -E "done in|FAILED"
grep -h "round 30:" $W/*.log
