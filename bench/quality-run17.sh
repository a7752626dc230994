#!/usr/bin/env bash
# Quality run 17 on the GPU machine (bench/QUALITY.md "Run 17"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run17.sh
# A steady noiseless recipe in run 15's cross-device regime and DP at ε 8 against it (bench/quality-configs-run17.ts):
# 1,156 sites of 4 e-mails, a Poisson cohort of 50 expected a round over 92 slots (sharing 24 trainers), FedIT rank 1
# on c_attn (d 2,048), FedSGD (one SGD step at 1 on the site's 4 e-mails) under FedAdam with bias correction, η 0.02
# decayed by cosine over 150 rounds; every arm on the same seeds (the same cohorts in the same rounds).
#   the noiseless arm `xd17-clip` and its DP twin `xd17-dp8` (ε 7.98 at δ 1e-5 by round 150), seeds 42, 43, 44.
# Six cells at once, one driver (run 15 ran seven: each cohort cell's process opens 24 trainers, i.e. WebGPU
# devices). The held-out set is scored every 2nd round and in each of the last 10. `timeout` at Q17_TIMEOUT s
# (default 430) on the driver: finished cells are in its JSON, a cut one's curve in its log.
# $OUT gets q17a.md (the driver's table), q17-curves.md (every cell's curve from the log, cut ones included),
# q17-table.md (per seed: best, final, mean of the last 10 rounds, largest drops, ε; DP minus noiseless),
# q17.tar.gz (JSON, log); 4 files.
set -u
W=/tmp/q17
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
T=${Q17_TIMEOUT:-430}
R=${Q17_ROUNDS:-150}
# Q17_EXTRA: flags appended to every driver (a CPU smoke check: --test-limit 20 ...).
X=(${Q17_EXTRA:-})
COMMON=(--rounds $R --no-fed-eval --val-limit 0 --eval-every 2 --eval-last 10 --splits dirichlet-0.5 --batch-size 4)
A=(--seeds 42,43,44 --configs xd17-clip,xd17-dp8 --parallel 6)
timeout $T node dist/bench/quality.js "${COMMON[@]}" "${A[@]}" "${X[@]}" --out $W/q17a.json >$W/q17a.out 2>$W/q17a.log
node dist/bench/quality-log.js --out $W/q17-curves.json $W/q17a.log >$W/q17-curves.md 2>&1
J=()
for f in $W/q17a.json $W/q17-curves.json; do [ -f "$f" ] && J+=("$f"); done
node dist/bench/quality-run17-table.js --rounds $R --last 10 --twin xd17-dp8=xd17-clip "${J[@]}" >$W/q17-table.md 2>&1
tar czf "$OUT/q17.tar.gz" -C /tmp q17
cp $W/q17a.md $W/q17-curves.md $W/q17-table.md "$OUT/" 2>/dev/null
cat $W/*.out | grep -E "done in|FAILED"
cat $W/q17-table.md
for f in $W/*.log; do grep -E "round [0-9]+:" "$f" | awk '{print $1}' | sort -u | while read c; do grep "^$c " "$f" | grep -E "round [0-9]+:" | tail -n 1; done; done
