#!/usr/bin/env bash
# Quality run 14 on the GPU machine (bench/QUALITY.md "Run 14"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run14.sh
# FedSGD under FedAdam with bias correction (bench/quality-configs-run14.ts): Adam on the pooled data, one server
# step a round. `groups` and Dirichlet 0.1, 3 seeds each: 6 cells at once (7 processes fit the 16-core host at fair
# speed), and a 7th (q14b: `groups` seed 42 at 16 e-mails a site). Each round is 5 sites × 1 step of 32 e-mails (a
# pooled batch of 160) at η 0.005 decayed by cosine over 400 rounds; the held-out set (400 e-mails) is scored every
# 20 rounds (--eval-every), no site evaluates anything
# (--no-fed-eval --val-limit 0: with a validation set each site would score it after every round, on the CPU,
# which costs more than its training step). `timeout` (Q14_TIMEOUT, default 420 s) ends the driver and its cells:
# finished cells are in the JSON, an unfinished one's scored rounds in the log (node dist/bench/quality-log.js).
# Writes $OUT/q14.tar.gz (JSON, logs), $OUT/q14a.md and q14b.md (the tables) and $OUT/q14-last.txt (each cell's
# last scored round).
set -u
W=/tmp/q14
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
T=${Q14_TIMEOUT:-420}
# Q14_EXTRA: flags appended to the driver, the last of a flag winning (a CPU smoke check:
# --rounds 2 --batch-size 1 --test-limit 20 --eval-every 1 --parallel 1).
X=(${Q14_EXTRA:-})
timeout $T node dist/bench/quality.js --rounds 400 --batch-size 32 --eval-every 20 --no-fed-eval --val-limit 0 \
  --seeds 42,43,44 --splits groups,dirichlet-0.1 --configs fedsgd-adambc-5e3 --parallel 6 "${X[@]}" \
  --out $W/q14a.json >$W/q14a.out 2>$W/q14a.log &
# The 7th process: the same on `groups` seed 42 at the ceiling's batch of 16 a site (pooled 80), against q14a's
# pooled 160 at the same round: what the larger batch buys.
timeout $T node dist/bench/quality.js --rounds 400 --batch-size 16 --eval-every 20 --no-fed-eval --val-limit 0 \
  --seeds 42 --splits groups --configs fedsgd-adambc-5e3 --parallel 1 "${X[@]}" \
  --out $W/q14b.json >$W/q14b.out 2>$W/q14b.log &
wait
tar czf "$OUT/q14.tar.gz" -C /tmp q14
cp $W/*.md "$OUT/" 2>/dev/null
cat $W/*.out | grep -E "done in|FAILED"
for f in $W/*.log; do
  for c in $(grep -E "round [0-9]+:" "$f" | awk '{print $1}' | sort -u); do
    echo "$(basename "$f" .log) $(grep "^$c " "$f" | grep -E "round [0-9]+:" | tail -n 1)"
  done
done | tee "$OUT/q14-last.txt"
