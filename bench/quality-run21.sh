#!/usr/bin/env bash
# Quality run 21 on the GPU machine (bench/QUALITY.md "Run 21"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run21.sh
# Run 18's DP arm (x18-dp8: FedSGD under the noise-aware FedAdam, EMA 0.95, C 2, z 0.749, 150 rounds) with the
# product's Poisson sampling (bench/quality-run21-cell.ts): 1,156 real gRPC sites of 4 e-mails each, the coordinator
# drawing each round's cohort at q = 50/1,156 from its secret and stamping ε at q in every manifest. Seeds 42, 43, 44
# at once (Q21_CONFIGS=x21-dp8,x21-clip adds the noiseless twin under the same sampling). Each cell is cut at
# Q21_TIMEOUT s (default 225): a cut cell leaves its curve in its log.
# $OUT gets q21-table.md (per seed: best, final, last-10 mean, largest drop, ε in the manifest and the accountant's)
# and q21.tar.gz (every cell's stdout and log); 2 files.
set -u
W=/tmp/q21
. bench/quality-sampled-env.sh
T=${Q21_TIMEOUT:-225}
R=${Q21_ROUNDS:-150}
TL=${Q21_TEST_LIMIT:-400}
CONFIGS=${Q21_CONFIGS:-x21-dp8}
SEEDS=${Q21_SEEDS:-42 43 44}
for c in ${CONFIGS//,/ }; do
  for s in $SEEDS; do
    cell="{\"split\":\"dirichlet-0.5\",\"seed\":$s,\"splitSeed\":7,\"config\":\"$c\",\"rounds\":$R,\"clients\":1156,\"localSteps\":1,\"batchSize\":4,\"learningRate\":1,\"testLimit\":$TL,\"fedEval\":false,\"valLimit\":0,\"evalEvery\":2,\"evalLast\":10}"
    timeout "$T" node dist/bench/quality-run21-cell.js "$cell" >"$W/$c-$s.out" 2>"$W/$c-$s.log" &
  done
done
wait
node dist/bench/quality-run21-table.js --rounds "$R" --last 10 "$W"/*.out >"$W/q21-table.md" 2>&1
tar czf "$OUT/q21.tar.gz" -C /tmp q21
cp "$W/q21-table.md" "$OUT/"
cat "$W/q21-table.md"
for f in "$W"/*.log; do echo "$(basename "$f"): $(grep -cE 'round [0-9]+:' "$f") scored; $(grep -E 'round [0-9]+:' "$f" | tail -n 1)"; done
grep -hiE "error|failed" "$W"/*.log | head -n 5
