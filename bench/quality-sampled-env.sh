# Sourced by the product-sampled quality runs (bench/quality-run21.sh, quality-run22.sh) with W set: a fresh work
# folder, the engine (f32 unless FEDTUNE_ENGINE says otherwise), and the descriptors that thousands of gRPC sites
# and their coordinator in one process need (two each).
rm -rf "$W"
mkdir -p "$W"
export FEDTUNE_ENGINE=${FEDTUNE_ENGINE-f32}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
