#!/usr/bin/env bash
# Builds a local stand-in for node:20-bookworm-slim where no image registry is reachable: Debian bookworm
# (debootstrap, minbase) plus this machine's Node.js and npm, imported into podman as $BASE_IMAGE.
# Cached: does nothing when the image exists already (FEDTUNE_CI_REBUILD_BASE=1 forces a rebuild).
set -euo pipefail
BASE_IMAGE=${BASE_IMAGE:-localhost/node:20-bookworm-slim}
PODMAN=${PODMAN:-podman --runtime runc --cgroup-manager cgroupfs}
if [[ ${FEDTUNE_CI_REBUILD_BASE:-0} != 1 ]] && $PODMAN image exists "$BASE_IMAGE"; then
  echo "base: $BASE_IMAGE exists (cached)"
  exit 0
fi
node_bin=$(readlink -f "$(command -v node)")
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")   # …/lib/node_modules/npm
[[ $("$node_bin" --version) == v20.* ]] || echo "base: warning: this machine's node is $("$node_bin" --version), not 20.x"
work=$(mktemp -d /var/tmp/fedtune-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "base: debootstrap --variant=minbase bookworm (a few minutes)"
debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; exit 1; }
install -m 0755 "$node_bin" "$work/rootfs/usr/local/bin/node"
mkdir -p "$work/rootfs/usr/local/lib/node_modules"
cp -a "$npm_dir" "$work/rootfs/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$work/rootfs/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$work/rootfs/usr/local/bin/npx"
# node:20-bookworm-slim has a `node` user (uid 1000); the Dockerfile relies on it.
chroot "$work/rootfs" sh -c 'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node'
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
tar -C "$work/rootfs" -c . | $PODMAN import --change 'CMD ["node"]' - "$BASE_IMAGE" >/dev/null
echo "base: imported $BASE_IMAGE ($($PODMAN image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes)"
