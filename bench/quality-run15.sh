#!/usr/bin/env bash
# Quality run 15 on the GPU machine (bench/QUALITY.md "Run 15"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run15.sh              # call 2 (80 rounds)
#   OUT=/some/dir Q15_CALL=1 bash bench/quality-run15.sh   # call 1 (30 rounds)
# DP-FedAvg in the cross-device regime (bench/quality-configs-run15.ts): 1,156 sites of 4 e-mails, a Poisson cohort
# of 50 expected a round over 92 slots (sharing 24 trainers), FedIT rank 1 on c_attn (d 2,048), every arm on the same
# seeds (the same cohorts in the same rounds). Seven cells at once (run 12's fair-speed count), `timeout` at
# Q15_TIMEOUT s (default 430) on each driver: finished cells are in the drivers' JSON, a cut one's curve in its log.
#   call 1 (30 rounds, 137 s on the H200): q15a the noiseless arm `xd-clip` and `xd-dp8` (ε 8), seeds 42, 43;
#          q15b `xd-dp4`, `xd-dp1`, and plain FedAvg `xd-plain` (fixed cohort of 50), seed 42.
#   call 2 (80 rounds): q15a `xd-clip` and `xd80-dp8` (ε 8 by round 80), seeds 42, 43, 44; q15b `xd-plain`, seed 42.
# $OUT gets q15a.md, q15b.md (the drivers' tables), q15-curves.md (every cell's curve from the logs, cut ones
# included), q15.tar.gz (JSON, logs); 4 files.
set -u
W=/tmp/q15
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
T=${Q15_TIMEOUT:-430}
# Q15_EXTRA: flags appended to every driver (a CPU smoke check: --rounds 1 --test-limit 20 ...).
X=(${Q15_EXTRA:-})
if [ "${Q15_CALL:-2}" = 1 ]; then
  COMMON=(--rounds 30 --no-fed-eval --splits dirichlet-0.5 --batch-size 4)
  A=(--seeds 42,43 --configs xd-clip,xd-dp8 --parallel 4)
  B=(--seeds 42 --configs xd-dp4,xd-dp1,xd-plain --parallel 3)
else
  COMMON=(--rounds 80 --no-fed-eval --splits dirichlet-0.5 --batch-size 4)
  A=(--seeds 42,43,44 --configs xd-clip,xd80-dp8 --parallel 6)
  B=(--seeds 42 --configs xd-plain --parallel 1)
fi
timeout $T node dist/bench/quality.js "${COMMON[@]}" "${A[@]}" "${X[@]}" --out $W/q15a.json >$W/q15a.out 2>$W/q15a.log &
timeout $T node dist/bench/quality.js "${COMMON[@]}" "${B[@]}" "${X[@]}" --out $W/q15b.json >$W/q15b.out 2>$W/q15b.log &
wait
node dist/bench/quality-log.js --out $W/q15-curves.json $W/q15a.log $W/q15b.log >$W/q15-curves.md 2>&1
tar czf "$OUT/q15.tar.gz" -C /tmp q15
cp $W/q15a.md $W/q15b.md "$OUT/" 2>/dev/null
cp $W/q15-curves.md "$OUT/" 2>/dev/null
cat $W/*.out | grep -E "done in|FAILED"
for f in $W/*.log; do grep -E "round [0-9]+:" "$f" | awk '{print $1}' | sort -u | while read c; do grep "^$c " "$f" | grep -E "round [0-9]+:" | tail -n 1; done; done
