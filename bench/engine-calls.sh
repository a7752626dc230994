#!/usr/bin/env bash
# Issue 9's H200 calls (2026-11-29, fifth session): each well under 540 s of wall time, at most 6 files in $OUT,
# Dawn's shader-compile warnings filtered out of the logs. Run from the repository root after `npx tsc -p .`.
#   bash bench/engine-calls.sh profile   # per-kernel GPU time of the step under each kernel choice, and the GPU
#                                        # checks of those choices (matmul, one step vs tfjs, choices vs defaults, attention)
#   bash bench/engine-calls.sh final     # engine b32 and b8, PyTorch b32 and b8, engine b32 again, in one call; then
#                                        # the GPU checks of the tc path (test:gpu's groups, most relevant first, time-boxed)
set -u
out=${OUT:-/tmp/engine-out}
mkdir -p "$out"
noise='warning|\^\^|subgroupMatrix|Compilation log|^\s*$|Reached the WGSL'
keep='^(ok|FAIL|tests:|adapter|skip)|exit [0-9]+( at [0-9]+ s)?$|Error'
case ${1:-} in
  profile)
    variants=${VARIANTS:-base,all+epi,epiSplit,loraT,attnT,split,all-safe,fwd-s4x2,fwd-d2x1,fwd-t2x4,fwd-k64,bwd-s4x2,dhs-s}
    timeout 300 node dist/bench/engine-profile.js --budget 240 --variants "$variants" --out "$out/profile-b32.json" > /dev/null 2> "$out/raw.txt"
    echo "profile exit $?" >> "$out/raw.txt"
    grep -v -E "$noise" "$out/raw.txt" > "$out/profile-log.txt"
    timeout 150 node dist/test/gpu-engine.js --only-matmul --paths tc > "$out/raw.txt" 2>&1
    echo "checks exit $?" >> "$out/raw.txt"
    timeout 45 node dist/test/gpu-engine.js --only-attention >> "$out/raw.txt" 2>&1
    echo "attention exit $?" >> "$out/raw.txt"
    grep -E "$keep" "$out/raw.txt" > "$out/checks.txt"
    rm -f "$out/raw.txt"
    ;;
  final)
    # Engine (b32, b8), PyTorch (b32, b8), the engine at b32 again: two engine figures around the same PyTorch ones.
    # Then the GPU checks on the tc path (GPT-2's tc kernels are what changed), most relevant first, each cut so the
    # whole call ends by ~${END:-345} s; a cut check group shows as missing lines, never as a pass.
    END=${END:-345}
    left() { local l=$((END - SECONDS)); [ $l -lt 5 ] && l=5; echo $l; }
    timeout 75 node dist/bench/engine-throughput.js --configs gpt2-small --batches 32,8 --paths tc --steps 20 --out "$out/engine.json" > /dev/null 2> "$out/raw.txt"
    echo "engine exit $? at ${SECONDS} s" >> "$out/raw.txt"
    for b in 32 8; do
      PYTHONUNBUFFERED=1 timeout 60 python3 bench/torch_lora_reference.py --configs gpt2-small --batch $b --steps 20 > "$out/torch-b$b.json" 2>> "$out/raw.txt"
      echo "torch b$b exit $? at ${SECONDS} s" >> "$out/raw.txt"
    done
    timeout 45 node dist/bench/engine-throughput.js --configs gpt2-small --batches 32 --paths tc --steps 20 --out "$out/engine-again.json" > /dev/null 2>> "$out/raw.txt"
    echo "engine again exit $? at ${SECONDS} s" >> "$out/raw.txt"
    grep -v -E "$noise" "$out/raw.txt" > "$out/engine-log.txt"
    : > "$out/raw.txt"
    for g in "--only-matmul" "--only-dropout --long" "--long --skip-matmul --skip-llama" "--only-llama --long"; do
      echo "== gpu-engine $g --paths tc (from ${SECONDS} s)" >> "$out/raw.txt"
      timeout "$(left)" node dist/test/gpu-engine.js $g --paths tc >> "$out/raw.txt" 2>&1
      echo "group exit $? at ${SECONDS} s" >> "$out/raw.txt"
    done
    grep -E "$keep|^== " "$out/raw.txt" > "$out/gpu-tests.txt"
    rm -f "$out/raw.txt"
    ;;
  *)
    echo "usage: bash bench/engine-calls.sh profile|final" >&2
    exit 2
    ;;
esac
ls -l "$out"
