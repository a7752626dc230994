#!/usr/bin/env bash
# Quality run 22 on the GPU machine (bench/QUALITY.md "Run 22"), from the repository root after `npx tsc -p .`:
#   OUT=/some/dir bash bench/quality-run22.sh
# Run 21's DP arm (noise-aware FedAdam, EMA 0.95, C 2, ε 8 at δ 1e-5 by round 150, product Poisson sampling over real
# gRPC sites) and its noiseless twin, the two arms of each seed drawing the SAME cohorts (bench/quality-run22-cell.ts),
# in the regimes of bench/quality-configs-run22.ts. Cells run Q22_PAR at a time from a queue ordered seed by seed
# (DP, then its twin), so that finished pairs come first; no cell starts after Q22_DEADLINE s, and each is cut at
# whatever is left of it (a cut cell leaves its curve in its log).
# Knobs: Q22_REGIMES (e1m100), Q22_SEEDS (42 43 44 45 46), Q22_PAR (4), Q22_DEADLINE (460), Q22_ROUNDS (the regime's
# 150), Q22_TEST_LIMIT (400), Q22_EVAL_EVERY (5), Q22_PAR_PER_GPU (instead of Q22_PAR: so many cells at once on each
# GPU the cells could be pinned to), Q22_PREFIX (x22; x24: run 24's regimes, bench/quality-configs-run24.ts;
# x24a: run 24a's adaptive-clipping arms, e4m50 only; a list such as "x24a x22" runs each seed's arms of every table,
# seed by seed), Q22_CELLS (a list of prefix:arm cells run for each seed, such as "x24a:dp8 x24a:clip x22:clip": run 25;
# default every prefix's dp8 and clip), FEDTUNE_VK_LAYER_DIR (on a machine of several GPUs, the cells take the GPUs in
# turn: bench/gpu-pin.sh).
# $OUT gets q22-table.md (per cell, per arm, and the paired differences) and q22.tar.gz (every cell's stdout and log).
set -u
W=/tmp/q22
. bench/quality-sampled-env.sh
. bench/gpu-pin.sh
read -r -a TAGS <<<"$GPU_TAGS"
PAR=${Q22_PAR:-4}
[ -n "${Q22_PAR_PER_GPU:-}" ] && PAR=$((Q22_PAR_PER_GPU * (${#TAGS[@]} > 0 ? ${#TAGS[@]} : 1)))
REGIMES=${Q22_REGIMES:-e1m100}
SEEDS=${Q22_SEEDS:-42 43 44 45 46}
T0=$(date +%s)
export Q22_W=$W Q22_T0=$T0 Q22_END=$((T0 + ${Q22_DEADLINE:-460}))
PREFIXES=${Q22_PREFIX:-x22}
EXTRA="\"testLimit\":${Q22_TEST_LIMIT:-400},\"evalEvery\":${Q22_EVAL_EVERY:-5}${Q22_ROUNDS:+,\"rounds\":$Q22_ROUNDS}"
cell() { # prefix regime arm seed [DRI_PRIME tag]: one cell, cut at the deadline
  local p=$1
  shift
  if [ -n "${4:-}" ]; then export DRI_PRIME=$4 MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1; fi
  local left=$((Q22_END - $(date +%s))) name="$p-$1-$2-$3"
  if [ "$left" -le 20 ]; then echo "$name: not started (deadline)" >"$Q22_W/$name.log"; return; fi
  echo "$name start $(($(date +%s) - Q22_T0)) s${4:+ on $4}" >&2
  timeout "$left" node dist/bench/quality-run22-cell.js "{\"prefix\":\"$p\",\"regime\":\"$1\",\"arm\":\"$2\",\"seed\":$3,$EXTRA}" >"$Q22_W/$name.out" 2>"$Q22_W/$name.log"
  local rc=$?
  echo "$name done $(($(date +%s) - Q22_T0)) s, rc $rc" >&2
}
export -f cell
export EXTRA
CELLS=${Q22_CELLS:-$(for p in ${PREFIXES//,/ }; do printf '%s:dp8 %s:clip ' "$p" "$p"; done)}
k=0
# Q22_LIST ("prefix regime arm seed; …") names the cells outright instead, such as a call's failed cells to run again.
if [ -n "${Q22_LIST:-}" ]; then tr ';' '\n' <<<"$Q22_LIST" | sed 's/^ *//; s/ *$//; /^$/d'; else for g in ${REGIMES//,/ }; do for s in $SEEDS; do for c in $CELLS; do
  # No trailing blank: xargs -L joins a line that ends in one to the next.
  echo "${c%%:*} $g ${c#*:} $s${TAGS[0]:+ ${TAGS[k % ${#TAGS[@]}]}}"
  k=$((k + 1))
done; done; done; fi |
  xargs -P "$PAR" -L 1 bash -c 'cell "$@"' _ 2>&1 | tee "$W/q22-progress.txt"
if ls "$W"/*.out >/dev/null 2>&1; then node dist/bench/quality-run22-table.js --last 10 "$W"/*.out >"$W/q22-table.md" 2>&1; else echo "no cell started" >"$W/q22-table.md"; fi
tar czf "$OUT/q22.tar.gz" -C /tmp q22
cp "$W/q22-table.md" "$OUT/"
cat "$W/q22-table.md"
for f in "$W"/*.log; do echo "$(basename "$f"): $(grep -cE 'round [0-9]+:' "$f") scored; $(grep -E 'round [0-9]+:|not started' "$f" | tail -n 1)"; done
grep -hiE "error|failed" "$W"/*.log | head -n 5
