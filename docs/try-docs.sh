#!/usr/bin/env bash
# Tries the docs' commands from a fresh clone: clones this repository at HEAD (committed files only) into a
# temporary directory and runs every ```sh block that docs/operator.md and docs/site.md mark `<!-- try N -->`, in
# order of N, in one bash (errexit, pipefail) at the clone's root, printing each block first. Background jobs the
# blocks start are killed when the script ends. Needs ports 50051, 9464 and 8080 free. CI runs the same blocks
# faster in test/ops-docs.test.ts (the built checkout, free ports, no npm ci); this script adds the fresh clone.
# Last line: `docs: passed (K blocks in S s)` or `docs: failed (…)`. Exit 0 passed, 1 failed.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
start=$(date +%s)
for port in 50051 9464 8080; do
  if node -e "require('net').connect($port,'127.0.0.1').on('connect',()=>process.exit(0)).on('error',()=>process.exit(1))"; then
    echo "docs: failed (port $port is in use: the pages use the default ports)"; exit 1
  fi
done
work=$(mktemp -d /tmp/fedtune-docs.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone -q --no-checkout "$repo" "$work/clone" && git -C "$work/clone" checkout -q "$(git -C "$repo" rev-parse HEAD)" ||
  { echo "docs: failed (git clone)"; exit 1; }
# The blocks, in order, each led by a line naming it; the script kills its own background jobs when it ends.
node - "$repo/docs/operator.md" "$repo/docs/site.md" >"$work/script.sh" <<'JS' || { echo "docs: failed (no blocks)"; exit 1; }
const fs = require('fs');
const blocks = [];
for (const file of process.argv.slice(2)) {
  const text = fs.readFileSync(file, 'utf8');
  for (const m of text.matchAll(/<!-- try (\d+) -->\n```sh\n([\s\S]*?)\n```/g)) blocks.push({ n: Number(m[1]), page: file.split('/').pop(), body: m[2] });
}
if (!blocks.length) process.exit(1);
blocks.sort((a, b) => a.n - b.n);
console.log("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT");
for (const b of blocks) {
  console.log(`echo '### try ${b.n} (${b.page})'\ncat <<'__TRY_BLOCK__'\n${b.body}\n__TRY_BLOCK__`);
  console.log(b.body);
}
console.log(`echo "docs: passed (${blocks.length} blocks in $(( $(date +%s) - ${Math.floor(Date.now() / 1000)} )) s)"`);
JS
cd "$work/clone" || exit 1
if timeout 1500 bash -eo pipefail "$work/script.sh" 2>&1; then exit 0; fi
echo "docs: failed (see the last block above; $(( $(date +%s) - start )) s)"
exit 1
