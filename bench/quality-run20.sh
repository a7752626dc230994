#!/usr/bin/env bash
# Quality run 20 on the GPU machine (bench/QUALITY.md "Run 20"), from the repository root after `npx tsc -p .`:
#   Q20_CALL=1 OUT=/some/dir bash bench/quality-run20.sh   # the cost probe, then the release rule's 9 runs
#   Q20_CALL=2 OUT=/some/dir bash bench/quality-run20.sh   # local-only, 3 seeds × 3 splits (finished Dirichlet 0.5)
#   Q20_CALL=3 Q20_DEADLINE=320 OUT=/some/dir bash bench/quality-run20.sh   # the rest of local-only (below)
# Both arms score the WHOLE held-out set (907 e-mails; --test-limit above its size keeps the seeded sample's order,
# so the first 400 are the 400 e-mails runs 1-19 scored) and keep which e-mails each version got right
# (--keep-correct). Fresh seeds 48, 49, 50 for both arms, so each site's local-only figure has a federated run of
# the same seed (LoRA start and batch order; the data split is split seed 7 in every run).
# Call 1: run 19's configuration (`fedsgd-adambc-3e3-ema99-accw5`: run 16's recipe released by validation accuracy
#   over a window of 5 evaluations), held-out and validation (all ~515 e-mails) every 20 rounds, 9 processes.
# Call 2: run 3's local-only arm (`local`: each site alone, 30 rounds of 10 AdamW steps of 16, held-out scored every
#   round as in run 3: a site's figure is its best of 30 scores), each site its own process (--site-cells).
# Every driver runs in its own process group, ended with its cells at the call's deadline (Q20_DEADLINE seconds
# after the start, default 388), so the call never overruns; a cut cell's scored rounds stay in its log (two
# decimals: exact on 907 e-mails; bench/quality-log.ts reads them back).
# Writes $OUT/q20-call$Q20_CALL.tar.gz (JSON, logs), $OUT/q20-call$Q20_CALL-summary.txt, call 1 also $OUT/q20-cost.json.
set -u
CALL=${Q20_CALL:?set Q20_CALL=1 or 2}
W=/tmp/q20-call$CALL
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
START=$(date +%s)
DEADLINE=${Q20_DEADLINE:-388}
WHOLE=100000
X=(${Q20_EXTRA:-})
left() { echo $((DEADLINE - ($(date +%s) - START))); }
. bench/quality-cut.sh # cut SECONDS CMD...: the command's process group ended after SECONDS
uptime
if [ "$CALL" = 1 ]; then
  # What scoring 907 e-mails costs against 400 on this host's CPU, alone (tfjs wasm, the cells' evaluator).
  cut 60 node dist/bench/quality-run20-cost.js >$W/q20-cost.json 2>&1
  cp $W/q20-cost.json "$OUT/"
  cat $W/q20-cost.json
  cut $(left) node dist/bench/quality.js --rounds 600 --batch-size 32 --eval-every 20 --val-limit 1000 --test-limit $WHOLE --keep-correct \
    --seeds 48,49,50 --splits dirichlet-0.5,dirichlet-0.1,groups --configs fedsgd-adambc-3e3-ema99-accw5 --parallel 9 "${X[@]}" \
    --out $W/q20a.json >$W/q20a.out 2>$W/q20a.log
elif [ "$CALL" = 3 ]; then
  # Call 2 finished Dirichlet 0.5 only (15 site units at once: ~215 s each). Here: Dirichlet 0.1's two sites that learn
  # (sites 1 and 2; call 2 cut them at round 22-23; sites 0, 3 and 4 sat at a label's share to there), every round;
  # and `groups` on all three seeds, scored every 10th round (run 3: a site alone there scores its label's share in
  # every round, 0 drop), 5 at a time: 11 processes.
  cut $(left) node dist/bench/quality.js --rounds 30 --no-fed-eval --val-limit 0 --test-limit $WHOLE --keep-correct --site-cells --sites 1,2 \
    --seeds 48,49,50 --splits dirichlet-0.1 --configs local --parallel 6 "${X[@]}" --out $W/q20c.json >$W/q20c.out 2>$W/q20c.log &
  cut $(left) node dist/bench/quality.js --rounds 30 --no-fed-eval --val-limit 0 --test-limit $WHOLE --keep-correct --site-cells --eval-every 10 \
    --seeds 48,49,50 --splits groups --configs local --parallel 5 "${X[@]}" --out $W/q20d.json >$W/q20d.out 2>$W/q20d.log &
  wait
else
  # One process per site (--site-cells): 45 units of 30 rounds, Q20_LOCAL_PARALLEL at a time, in order: Dirichlet 0.5,
  # Dirichlet 0.1, then `groups` (where a site alone sees one label and scores that label's share: run 3).
  cut $(left) node dist/bench/quality.js --rounds 30 --no-fed-eval --val-limit 0 --test-limit $WHOLE --keep-correct --site-cells \
    --seeds 48,49,50 --splits dirichlet-0.5,dirichlet-0.1,groups --configs local --parallel ${Q20_LOCAL_PARALLEL:-15} "${X[@]}" \
    --out $W/q20b.json >$W/q20b.out 2>$W/q20b.log
fi
tar czf "$OUT/q20-call$CALL.tar.gz" -C /tmp q20-call$CALL
grep -hE "done in|FAILED" $W/*.out
{
  # The picks (call 1) or the local-only table (call 2); the bootstrap runs afterwards, off the device.
  if [ "$CALL" = 1 ]; then node dist/bench/quality-run20-table.js --fed $W/q20a.json --reps 0
  elif [ "$CALL" = 3 ]; then node dist/bench/quality-run20-table.js --local $W/q20c.json,$W/q20d.json --local-log $W/q20c.log,$W/q20d.log
  else node dist/bench/quality-run20-table.js --local $W/q20b.json --local-log $W/q20b.log; fi
  echo "wall $(($(date +%s) - START)) s"
} 2>&1 | tee "$OUT/q20-call$CALL-summary.txt"
uptime
