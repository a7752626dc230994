#!/usr/bin/env bash
# `npm run demo` at its defaults (the measured recipe, 600 rounds) on the GPU machine, its sites on the WebGPU
# engine's f32 path (FEDTUNE_ENGINE=f32, as bench/QUALITY.md run 16), with its wall time, its disk and its curve.
#   OUT=/some/dir bash bench/demo-defaults-gpu.sh [demo flags]   (dist/ built; DEMO_LIMIT_S caps the run, default 190)
set -u
OUT=${OUT:?set OUT}
R=$(mktemp -d)/demo
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE:-f32}
uptime > "$OUT/demo.txt"
S=$(date +%s%N)
timeout "${DEMO_LIMIT_S:-190}" node dist/examples/simulate.js --run-dir "$R" "$@" >> "$OUT/demo.txt" 2>&1
RC=$?
echo "rc=$RC wall_ms=$(( ($(date +%s%N) - S) / 1000000 )) engine=$FEDTUNE_ENGINE" >> "$OUT/demo.txt"
echo "versions: $(ls "$R/versions" | wc -l), bytes on disk: $(du -sb "$R" | cut -f1)" >> "$OUT/demo.txt"
node dist/bench/demo-curve.js "$R" > "$OUT/curve.json" 2>> "$OUT/demo.txt"
rm -rf "$(dirname "$R")"
