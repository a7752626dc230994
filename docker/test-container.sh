#!/usr/bin/env bash
# The container test: builds the image with podman on a local stand-in base (docker/build-base.sh) and a
# Prometheus stand-in from Debian's package (docker/prometheus/Containerfile), then starts docker/compose.yaml
# itself with podman-compose — coordinator, three sites and Prometheus on the compose network, host ports free —
# for a 2-round federation. Checks the gRPC health status (on the published port and through the image's
# HEALTHCHECK), metrics as Prometheus scraped them (its HTTP API: the target up, 3 sites connected, a round
# committed), the coordinator's "run finished" line and `fedtune verify` on the run volume.
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
PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-localhost/prometheus:local}
SERVICES=(coordinator site-a site-b site-c prometheus)
ctr() { echo "${tag}_$1_1"; }   # podman-compose 1.0's container names
fail() { echo "container test: FAILED: $1"; for c in "${SERVICES[@]}"; do echo "--- $c (last lines)"; $PODMAN logs --tail 15 "$(ctr "$c")" 2>&1; done; echo "container: failed ($1)"; exit 1; }

# 1. An engine: podman (with runc; crun fails on this kind of host), installed from Debian where missing.
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc uidmap fuse-overlayfs slirp4netns debootstrap podman-compose golang-github-containernetworking-plugin-dnsname) >/dev/null 2>&1 ||
      skip "podman could not be installed with apt-get"
  else
    skip "no podman, and not root with apt-get to install it"
  fi
fi
# podman-compose runs plain `podman`, and service names resolve through CNI's dnsname plugin: both from Debian.
if ! command -v podman-compose >/dev/null || [[ ! -x /usr/lib/cni/dnsname ]] || ! command -v curl >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman-compose golang-github-containernetworking-plugin-dnsname curl) >/dev/null 2>&1 ||
      skip "podman-compose, the CNI dnsname plugin or curl could not be installed with apt-get"
  else
    skip "no podman-compose, CNI dnsname plugin or curl, and not root with apt-get to install them"
  fi
fi
# Podman's default ulimits cannot be set in this sandbox (setrlimit not permitted), and crun fails here while runc
# works: podman-compose calls plain `podman`, so the choices go in containers.conf (only where none is made).
if [[ $(id -u) == 0 ]]; then
  mkdir -p /etc/containers
  grep -qs default_ulimits /etc/containers/containers.conf || printf '[containers]\ndefault_ulimits = []\n' >>/etc/containers/containers.conf
  grep -qs '^\[engine\]' /etc/containers/containers.conf || printf '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n' >>/etc/containers/containers.conf
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
t0=$(date +%s)
$PODMAN build --format docker --network host --build-arg BASE_IMAGE="$BASE_IMAGE" -f docker/prometheus/Containerfile -t "$PROMETHEUS_IMAGE" docker/prometheus >/tmp/$tag.pbuild 2>&1 ||
  { tail -30 /tmp/$tag.pbuild; fail "Prometheus stand-in image build"; }
echo "image: $PROMETHEUS_IMAGE (Debian's prometheus) built in $(( $(date +%s) - t0 )) s"

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
# docker/compose.yaml as a user runs it, with this test's images and free host ports (its variables).
# Prometheus scrapes every 5 s and the coordinator exits when its 2 rounds are done: at the compose file's 2
# local steps an idle box finished the run in ~8 s, before a scrape saw the sites. 24 steps keep it live ~20 s.
LOCAL_STEPS=${LOCAL_STEPS:-24}
export IMAGE PROMETHEUS_IMAGE GRPC_PORT METRICS_PORT PROMETHEUS_PORT LOCAL_STEPS
GRPC_PORT=$(free_port); METRICS_PORT=$(free_port); PROMETHEUS_PORT=$(free_port)
COMPOSE=(podman-compose -p "$tag" -f docker/compose.yaml)
cleanup() {
  "${COMPOSE[@]}" down -v -t 1 >/dev/null 2>&1
  for c in "${SERVICES[@]}"; do $PODMAN rm -f -t 1 "$(ctr "$c")" >/dev/null 2>&1; done
  $PODMAN volume rm -f "${tag}_runs" "${tag}_site-a" "${tag}_site-b" "${tag}_site-c" >/dev/null 2>&1
  $PODMAN network rm -f "${tag}_default" >/dev/null 2>&1
  rm -f /tmp/$tag.*
}
trap cleanup EXIT
prom() { curl -sf --get "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" --data-urlencode "query=$1" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s).data.result;console.log(r.length?r[0].value[1]:"")})'; }

# 3. The stack, cold start timed from `up` to the first SERVING answer on the published gRPC port.
start=$(date +%s%N)
"${COMPOSE[@]}" up -d --no-build >/tmp/$tag.up 2>&1 || { tail -30 /tmp/$tag.up; fail "podman-compose up"; }
serving=""
for _ in $(seq 1 600); do
  if [[ $($PODMAN inspect --format '{{.State.Running}}' "$(ctr coordinator)" 2>/dev/null) != true ]]; then fail "coordinator exited before SERVING"; fi
  if node dist/coordinator/ops/healthcheck.js "127.0.0.1:$GRPC_PORT" >/dev/null 2>&1; then serving=$(( ($(date +%s%N) - start) / 1000000 )); break; fi
  sleep 0.1
done
[[ -n $serving ]] || fail "coordinator not SERVING after 60 s"
echo "cold start: compose up to gRPC health SERVING (published port) in $serving ms"
# The image's own HEALTHCHECK (node + grpc health Check inside the container).
# (podman without systemd logs that it cannot schedule periodic healthchecks; `podman healthcheck run` works.)
$PODMAN healthcheck run "$(ctr coordinator)" >/dev/null 2>&1 || fail "HEALTHCHECK reported unhealthy while SERVING"
echo "healthcheck: healthy"

# 4. Metrics as Prometheus scraped them (coordinator:9464 on the compose network), while the run is live.
seen=""
for _ in $(seq 1 900); do
  up=$(prom 'up{job="fedtune-coordinator"}' 2>/dev/null || true)
  sites=$(prom 'max_over_time(fedtune_sites_connected[15m])' 2>/dev/null || true)
  rounds=$(prom 'max_over_time(fedtune_rounds_committed_total[15m])' 2>/dev/null || true)
  if [[ $up == 1 && $sites == 3 && -n $rounds && $rounds -ge 1 ]]; then seen="up 1, fedtune_sites_connected 3, fedtune_rounds_committed_total $rounds"; break; fi
  [[ $($PODMAN inspect --format '{{.State.Running}}' "$(ctr coordinator)") == true ]] || break
  sleep 1
done
[[ -n $seen ]] || fail "Prometheus never reported the target up with 3 sites connected and a round committed (last: up=$up sites=$sites rounds=$rounds)"
echo "prometheus: $seen"

# 5. The run ends by itself (2 rounds); the checkpoint on the volume verifies.
rc=$(timeout 900 $PODMAN wait "$(ctr coordinator)") || fail "coordinator did not finish within 15 minutes"
[[ $rc == 0 ]] || fail "coordinator exited $rc"
# (Captured first: `grep -q` closing the pipe early would fail the pipeline under pipefail.)
coord_log=$($PODMAN logs "$(ctr coordinator)" 2>&1)
grep -q 'run finished: version 2 of 2' <<<"$coord_log" || fail "coordinator log does not say 'run finished: version 2 of 2'"
for c in site-a site-b site-c; do
  rc=$(timeout 120 $PODMAN wait "$(ctr "$c")") || fail "$c did not finish"
  [[ $rc == 0 ]] || fail "$c exited $rc"
done
verify=$($PODMAN run --rm --no-healthcheck -v "${tag}_runs:/srv/runs" "$IMAGE" fedtune verify /srv/runs/demo 2>&1) || { echo "$verify"; fail "fedtune verify"; }
echo "verify: $verify"
grep -q '^OK: 3 versions' <<<"$verify" || fail "verify did not report 3 versions"
echo "container: passed (image $((size / 1000000)) MB, SERVING after $serving ms; compose stack with Prometheus)"
