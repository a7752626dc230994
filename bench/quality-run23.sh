#!/usr/bin/env bash
# Quality run 23 on the GPU machine (bench/QUALITY.md "Run 23"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run23.sh
# The centralized ceiling (`central-cos`: all five sites' training data at one site, 30 rounds of 50 AdamW steps of
# 16, the same recipe as runs 3, 10 and 14's ceilings) on run 20's fresh seeds 48-50 and all three splits, scoring
# the WHOLE held-out set (907 e-mails) every round, so run 20's federated bests on those seeds have a ceiling judged
# on the same e-mails. 9 cells at once (~160 s on the H200 host). Writes $OUT/c907.tar.gz (JSON with per-e-mail
# answers, the table, the logs).
set -u
W=/tmp/c907
rm -rf $W
mkdir -p $W
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
uptime
timeout ${C907_T:-420} node dist/bench/quality.js --rounds 30 --no-fed-eval --test-limit 100000 --keep-correct \
  --seeds 48,49,50 --splits dirichlet-0.5,dirichlet-0.1,groups --configs central-cos --parallel 9 --out $W/c907.json >$W/c907.out 2>$W/c907.log
echo "quality rc=$?"
uptime
tar czf $OUT/c907.tar.gz -C /tmp c907
tail -n 30 $W/c907.out
