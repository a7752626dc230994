#!/usr/bin/env bash
# The container test: builds the image with podman on a local stand-in base (docker/build-base.sh), runs a
# coordinator and three sites from it (host network, free ports) for a 2-round federation, checks the gRPC
# health status (through the image's HEALTHCHECK), a metric, and `fedtune verify` on the run volume.
# Prints image size and cold start to SERVING. Last line: `container: passed|failed|skipped (reason)`.
# Exit: 0 passed or skipped, 1 failed. Where no container engine can run, it skips and says why.
set -uo pipefail
cd "$(dirname "$0")/.."
IMAGE=${FEDTUNE_CI_IMAGE:-localhost/fedtune:test}
BASE_IMAGE=${BASE_IMAGE:-localhost/node:20-bookworm-slim}
export BASE_IMAGE
PODMAN="podman --runtime runc --cgroup-manager cgroupfs"
export PODMAN
tag="ft$$"
skip() { echo "container: skipped ($1)"; exit 0; }
fail() { echo "container test: FAILED: $1"; for c in coord site-a site-b site-c; do echo "--- $c (last lines)"; $PODMAN logs --tail 15 "$tag-$c" 2>&1; done; echo "container: failed ($1)"; exit 1; }

# 1. An engine: podman (with runc; crun fails on this kind of host), installed from Debian where missing.
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc uidmap fuse-overlayfs slirp4netns debootstrap) >/dev/null 2>&1 ||
      skip "podman could not be installed with apt-get"
  else
    skip "no podman, and not root with apt-get to install it"
  fi
fi
# Podman's default ulimits cannot be set in this sandbox (setrlimit not permitted).
if [[ $(id -u) == 0 ]] && ! grep -qs default_ulimits /etc/containers/containers.conf; then
  mkdir -p /etc/containers && printf '[containers]\ndefault_ulimits = []\n' >>/etc/containers/containers.conf
fi
command -v debootstrap >/dev/null || skip "debootstrap missing (needed for the stand-in base image)"
if ! $PODMAN image exists "$BASE_IMAGE"; then
  bash docker/build-base.sh || skip "the stand-in base image could not be built (no Debian mirror?)"
fi
$PODMAN run --rm --network host "$BASE_IMAGE" true 2>/tmp/$tag.err || skip "podman cannot run a container here: $(tail -1 /tmp/$tag.err)"

# 2. The image. npm inside the build needs this machine's CA bundle (a build secret: no layer keeps it).
secret=()
[[ -s /etc/ssl/certs/ca-certificates.crt ]] && secret=(--secret id=npm_ca,src=/etc/ssl/certs/ca-certificates.crt)
t0=$(date +%s)
$PODMAN build --format docker --network host --build-arg BASE_IMAGE="$BASE_IMAGE" "${secret[@]}" -f docker/Dockerfile -t "$IMAGE" . >/tmp/$tag.build 2>&1 ||
  { tail -30 /tmp/$tag.build; fail "image build"; }
size=$($PODMAN image inspect --format '{{.Size}}' "$IMAGE")
echo "image: $IMAGE $((size / 1000000)) MB, built in $(( $(date +%s) - t0 )) s (base layers cached after the first build)"

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
GRPC=$(free_port); METRICS=$(free_port)
vol="$tag-runs"
cleanup() { for c in coord site-a site-b site-c; do $PODMAN rm -f -t 1 "$tag-$c" >/dev/null 2>&1; done; $PODMAN volume rm -f "$vol" "$tag-site-a" "$tag-site-b" "$tag-site-c" >/dev/null 2>&1; rm -f /tmp/$tag.*; }
trap cleanup EXIT

# 3. The coordinator, on a fresh named volume (owned by root until the image's chown applies), cold start timed.
start=$(date +%s%N)
$PODMAN run -d --name "$tag-coord" --network host -v "$vol:/srv/runs" \
  -e FEDTUNE_SERVER_HOST=127.0.0.1 -e FEDTUNE_SERVER_PORT="$GRPC" -e FEDTUNE_METRICS_HOST=127.0.0.1 -e FEDTUNE_METRICS_PORT="$METRICS" \
  -e FEDTUNE_RUN_DIR=/srv/runs/demo -e FEDTUNE_ROUNDS_TOTAL=2 -e FEDTUNE_ROUNDS_MIN_CLIENTS=3 -e FEDTUNE_ROUNDS_MIN_UPDATES=2 \
  -e FEDTUNE_TRAINING_LOCAL_STEPS=2 -e FEDTUNE_TRAINING_BATCH_SIZE=4 -e FEDTUNE_AUTH_MODE=tofu \
  "$IMAGE" >/dev/null 2>/tmp/$tag.run || { cat /tmp/$tag.run; fail "coordinator container did not start"; }
# (podman without systemd logs that it cannot schedule periodic healthchecks; `podman healthcheck run` works.)
serving=""
for _ in $(seq 1 600); do
  if [[ $($PODMAN inspect --format '{{.State.Running}}' "$tag-coord" 2>/dev/null) != true ]]; then fail "coordinator exited before SERVING"; fi
  if node dist/coordinator/ops/healthcheck.js "127.0.0.1:$GRPC" >/dev/null 2>&1; then serving=$(( ($(date +%s%N) - start) / 1000000 )); break; fi
  sleep 0.1
done
[[ -n $serving ]] || fail "coordinator not SERVING after 60 s"
echo "cold start: container start to gRPC health SERVING in $serving ms"
# The image's own HEALTHCHECK (node + grpc health Check inside the container).
$PODMAN healthcheck run "$tag-coord" >/dev/null 2>&1 || fail "HEALTHCHECK reported unhealthy while SERVING"
echo "healthcheck: healthy"

# 4. Three sites, each with its own identity volume.
names=(site-a site-b site-c)
for i in 0 1 2; do
  name=${names[$i]}
  $PODMAN run -d --name "$tag-$name" --network host --no-healthcheck -v "$tag-$name:/srv/site" "$IMAGE" \
    fedtune-site client --address "127.0.0.1:$GRPC" --name "$name" --shard "$i" --of 3 --identity /srv/site/identity.json >/dev/null ||
    fail "site $name did not start"
done

# 5. A metric while the run is live: round 1 committed, three sites connected.
seen=""
for _ in $(seq 1 900); do
  body=$(curl -sf "http://127.0.0.1:$METRICS/metrics" || true)
  if grep -Eq '^fedtune_rounds_committed_total [12]$' <<<"$body"; then seen=$(grep -E '^fedtune_(rounds_committed_total|sites_connected|latest_version) ' <<<"$body" | tr '\n' ' '); break; fi
  [[ $($PODMAN inspect --format '{{.State.Running}}' "$tag-coord") == true ]] || break
  sleep 1
done
[[ -n $seen ]] || fail "no fedtune_rounds_committed_total ≥ 1 on the metrics endpoint"
echo "metrics: $seen"

# 6. The run ends by itself (2 rounds); the checkpoint on the volume verifies.
rc=$(timeout 900 $PODMAN wait "$tag-coord") || fail "coordinator did not finish within 15 minutes"
[[ $rc == 0 ]] || fail "coordinator exited $rc"
# (Captured first: `grep -q` closing the pipe early would fail the pipeline under pipefail.)
coord_log=$($PODMAN logs "$tag-coord" 2>&1)
grep -q 'run finished: version 2 of 2' <<<"$coord_log" || fail "coordinator log does not say 'run finished: version 2 of 2'"
verify=$($PODMAN run --rm --no-healthcheck -v "$vol:/srv/runs" "$IMAGE" fedtune verify /srv/runs/demo 2>&1) || { echo "$verify"; fail "fedtune verify"; }
echo "verify: $verify"
grep -q '^OK: 3 versions' <<<"$verify" || fail "verify did not report 3 versions"
echo "container: passed (image $((size / 1000000)) MB, SERVING after $serving ms)"
