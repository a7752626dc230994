#!/usr/bin/env bash
# Quality run 18 on the GPU machine (bench/QUALITY.md "Run 18"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir Q18_CALL=1 bash bench/quality-run18.sh
# DP at ε 8 against a steady noiseless twin in run 17's cross-device regime (bench/quality-configs-run18.ts): 1,156
# sites of 4 e-mails, a Poisson cohort sampled each round, rank 1 on c_attn, FedSGD under FedAdam with bias
# correction, η 0.02 cosine over 150 rounds, C 2, the server's EMA (β 0.95) scored in every arm; each DP arm differs
# from its twin in z alone and draws the same cohorts per seed.
#   Q18_CALL=1: FFA-LoRA (η 0.2, C 0.5), cohort 50: the twin, DP with the noise-aware Adam, DP with run 17's Adam,
#               seeds 42, 43, 44 (9 cells at once).
#   Q18_CALL=2: FedIT (run 17's η 0.02 and C 2), cohort 50: the twin, DP with the noise-aware Adam, DP with run 17's
#               Adam, seeds 42, 43, 44 (the seeds and cohorts of run 17; 9 cells at once).
# The held-out set is scored every 2nd round and in each of the last 10. `timeout` at Q18_TIMEOUT s (default 400) on
# the driver: finished cells are in its JSON, a cut one's curve in its log.
# $OUT gets q18.md (the driver's table), q18-curves.md (every cell's curve from the log, cut ones included),
# q18-table.md (per seed: best, final, mean of the last 10 rounds, largest drops, ε; DP minus its twin),
# q18.tar.gz (JSON, log); 4 files.
set -u
W=/tmp/q18
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
T=${Q18_TIMEOUT:-400}
R=${Q18_ROUNDS:-150}
# Q18_EXTRA: flags appended to the driver (a CPU smoke check: --test-limit 20 ...).
X=(${Q18_EXTRA:-})
COMMON=(--rounds $R --no-fed-eval --val-limit 0 --eval-every 2 --eval-last 10 --splits dirichlet-0.5 --batch-size 4)
if [ "${Q18_CALL:-1}" = 1 ]; then
  A=(--seeds ${Q18_SEEDS:-42,43,44} --configs ${Q18_CONFIGS:-x18f-clip,x18f-dp8,x18f-dp8-adam} --parallel ${Q18_PARALLEL:-9})
  TW=x18f-dp8=x18f-clip,x18f-dp8-adam=x18f-clip
else
  A=(--seeds ${Q18_SEEDS:-42,43,44} --configs ${Q18_CONFIGS:-x18-clip,x18-dp8,x18-dp8-adam} --parallel ${Q18_PARALLEL:-9})
  TW=x18-dp8=x18-clip,x18-dp8-adam=x18-clip
fi
timeout $T node dist/bench/quality.js "${COMMON[@]}" "${A[@]}" "${X[@]}" --out $W/q18.json >$W/q18.out 2>$W/q18.log
node dist/bench/quality-log.js --out $W/q18-curves.json $W/q18.log >$W/q18-curves.md 2>&1
J=()
for f in $W/q18.json $W/q18-curves.json; do [ -f "$f" ] && J+=("$f"); done
node dist/bench/quality-run17-table.js --rounds $R --last 10 --twin $TW "${J[@]}" >$W/q18-table.md 2>&1
tar czf "$OUT/q18.tar.gz" -C /tmp q18
cp $W/q18.md $W/q18-curves.md $W/q18-table.md "$OUT/" 2>/dev/null
cat $W/*.out | grep -E "done in|FAILED"
cat $W/q18-table.md
grep -E "round [0-9]+:" $W/q18.log | awk '{print $1}' | sort -u | while read c; do grep "^$c " $W/q18.log | grep -E "round [0-9]+:" | tail -n 1; done
