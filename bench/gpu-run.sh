#!/usr/bin/env bash
# One GPU-machine session's worth of engine checks and measurements, each piece under its own time limit, logs to
# $OUT. Run from the directory holding dist/, bench/ and examples/base-model (after `source .gpu/enter.sh`).
#   bash bench/gpu-run.sh [tests|bench|torch|tfjs|probe ...]   (default: all, in that order)
set -u
out=${OUT:-/tmp/engine-out}; mkdir -p "$out"
parts=${*:-probe tests bench torch tfjs}
for p in $parts; do
  case $p in
    probe)
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/probe.log" 2>&1
      for m in drop keep; do timeout 60 node --expose-gc bench/webgpu-crash-repro.js $m >> "$out/probe.log" 2>&1; echo "crash repro $m: exit $?" >> "$out/probe.log"; done ;;
    tests) timeout ${TESTS_TIMEOUT:-240} node dist/test/gpu-engine.js --long ${TEST_ARGS:-} > "$out/gpu-tests.log" 2>&1; echo "exit $?" >> "$out/gpu-tests.log" ;;
    bench) timeout ${BENCH_TIMEOUT:-300} node dist/bench/engine-throughput.js --steps ${STEPS:-20} --out "$out/engine-bench.json" ${BENCH_ARGS:-} > "$out/engine-bench.log" 2>&1 ;;
    torch)
      for b in 8 32; do PYTHONUNBUFFERED=1 timeout ${TORCH_TIMEOUT:-150} python3 bench/torch_lora_reference.py --batch $b --steps 20 ${TORCH_ARGS:-} > "$out/torch-b$b.json" 2>> "$out/stderr.log"; done ;;
    tfjs) FEDTUNE_BACKEND=webgpu timeout 120 node dist/bench/lora-throughput.js --configs demo,gpt2-small --batch 8 --steps 5 > "$out/tfjs-webgpu-b8.json" 2>> "$out/stderr.log" ;;
  esac
done
grep -h "tests:" "$out/gpu-tests.log" 2>/dev/null
