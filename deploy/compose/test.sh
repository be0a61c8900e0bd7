#!/usr/bin/env bash
# compose.yaml for real: a coordinator and 4 workers in containers on a private (internal)
# network run a sweep; mid-sweep one worker container is killed and another is cut off the
# network for longer than the lease, then put back. The sweep must complete with every trial
# accounted for and the lost trials run again. No image can be pulled here, so the base image is
# a Debian root filesystem made with debootstrap (the host's release, from the host's apt mirror)
# and imported; the binaries are built on the host (LRSWEEP_BIN_DIR, else a release build) and
# go into the image through the Dockerfile's BINARIES=prebuilt. Run as root. Last line: summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
started=$SECONDS
lease_ms=3000
partition_s=8

say() { echo "compose-test: $*" >&2; }
fail() {
    say "FAILED: $*"
    echo "compose test: FAILED ($*)"
    exit 1
}
apt_install() {
    say "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    [[ -n ${apt_updated:-} ]] || { apt-get update -qq && apt_updated=1; }
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! docker info >/dev/null 2>&1; then
    say "starting the Docker daemon"
    (service docker start || (dockerd >/var/log/dockerd.log 2>&1 &)) >/dev/null 2>&1
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || fail "no Docker daemon"
fi
if docker compose version >/dev/null 2>&1; then
    compose_tool=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose_tool=(docker-compose)
else
    apt_install docker-compose
    compose_tool=(docker-compose)
fi
command -v python3 >/dev/null || apt_install python3-minimal

if [[ -z ${LRSWEEP_BIN_DIR:-} ]]; then
    say "building the release binaries"
    cargo build --release --locked --bins -p lrsweep-coordinator -p lrsweep-worker
    LRSWEEP_BIN_DIR=${CARGO_TARGET_DIR:-$repo/target}/release
fi

work=$(mktemp -d /tmp/lrsweep-compose.XXXXXX)
project=lrsweeptest$$
compose() {
    "${compose_tool[@]}" -p "$project" -f "$repo/deploy/compose/compose.yaml" -f "$work/test.yaml" "$@"
}
cleanup() {
    if [[ -n ${KEEP_WORK:-} ]]; then
        say "kept $work and project $project"
        return
    fi
    compose down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# The base: the host's Debian release (the prebuilt binaries link against its glibc), with tini,
# imported once and kept as lrsweep-test/debian:$codename.
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
base=lrsweep-test/debian:$codename
if ! docker image inspect "$base" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || apt_install debootstrap
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    [[ -n $mirror ]] || mirror=$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list)
    say "making $base with debootstrap"
    debootstrap --variant=minbase --include=tini "$codename" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -n 20 "$work/debootstrap.log" >&2; fail "debootstrap failed"; }
    tar -C "$work/rootfs" -c . | docker import - "$base" >/dev/null
    rm -rf "$work/rootfs"
fi

mkdir -p "$work/context/prebuilt"
cp "$LRSWEEP_BIN_DIR/lrsweep-coordinator" "$LRSWEEP_BIN_DIR/lrsweep-worker" "$work/context/prebuilt/"
for target in coordinator worker; do
    say "building lrsweep-$target:test"
    DOCKER_BUILDKIT=0 docker build -q -f "$repo/deploy/docker/Dockerfile" --target "$target" \
        --build-arg RUST_IMAGE="$base" --build-arg RUNTIME_IMAGE="$base" --build-arg BINARIES=prebuilt \
        -t "lrsweep-$target:test" "$work/context" >/dev/null 2>"$work/build.log" || { cat "$work/build.log" >&2; fail "docker build"; }
done

# The test's own token, lease and spec; an internal network (nothing leaves this machine) and a
# health check every 2 s instead of 10 (the image's command).
cat >"$work/lrsweep.env" <<EOF
LRSWEEP_TOKEN=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
LRSWEEP_LOG_FORMAT=json
LRSWEEP_LEASE_MS=$lease_ms
LRSWEEP_GIVE_UP_AFTER=20s
EOF
# MLP trials of seconds each for 4 containers on this machine's cores: a sweep of about a minute.
# The loss and the partition fall in round 0 (trials of about 4–9 s: at 40,000 steps, about 2 s,
# a chosen worker's trial once ended between the choice and the cut, and nothing ran again
# there). Round 1 (trials of about 13 s,
# no rung pruning, so none ends early) leaves the cut-off worker time to come back before the
# sweep ends: it is back within about 10 s of the partition's end (its reconnect backoff). With
# round 1 at 120,000 steps and rung pruning, a CI run once ended the sweep before it was back.
cat >"$work/spec.toml" <<'EOF'
[search]
strategy = "coarse-to-fine"
min_lr = 1e-5
max_lr = 10.0
rounds = 2
candidates_per_round = 6
steps = [120000, 400000]

[pruning]
rule = "none"

[trainer]
model = { kind = "mlp", hidden = [32] }
EOF
cat >"$work/test.yaml" <<'EOF'
services:
  coordinator:
    healthcheck:
      interval: 2s
networks:
  lrsweep:
    internal: true
EOF
export LRSWEEP_TAG=test LRSWEEP_ENV_FILE=$work/lrsweep.env LRSWEEP_SPEC_FILE=$work/spec.toml

say "compose up with 4 workers"
compose up -d --no-build --scale worker=4 >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "compose up"; }
coordinator=$(compose ps -q coordinator)
mapfile -t workers < <(compose ps -q worker)
[[ ${#workers[@]} -eq 4 ]] || fail "${#workers[@]} worker containers, not 4"
logs() { docker logs "$coordinator" 2>&1; }
count() { logs | grep -c "\"event\":\"$1\"" || true; }

health=
for _ in $(seq 150); do
    health=$(docker inspect -f '{{.State.Health.Status}}' "$coordinator")
    [[ $health == healthy ]] && break
    sleep 0.2
done
[[ $health == healthy ]] || { logs | tail -n 20 >&2; fail "the coordinator never became healthy ($health)"; }
say "coordinator healthy (HEALTHCHECK through the gRPC health service)"

# Wait until every worker trains a trial, then take the two that started theirs last (the least
# likely to finish it in the next moment): one is killed, one cut off. Worker names are
# HOSTNAME-PID, and a container's hostname is its short id.
busy_workers() {
    logs | python3 -c '
import json, sys
names, running = {}, {}
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    ev, w = e.get("event"), e.get("worker")
    if ev == "worker_registered":
        names[w] = e["name"].split("-")[0]
    elif ev == "trial_dispatched":
        running[w] = e["timestamp"]
    elif ev in ("trial_completed", "trial_pruned", "trial_failed", "lease_expired"):
        running.pop(w, None)
for w, _ in sorted(running.items(), key=lambda kv: kv[1], reverse=True):
    print(names.get(w, ""))
'
}
busy=()
for _ in $(seq 600); do
    mapfile -t busy < <(busy_workers)
    [[ ${#busy[@]} -ge 4 ]] && break
    sleep 0.1
done
[[ ${#busy[@]} -ge 4 ]] || { logs | tail -n 20 >&2; fail "trials never reached all 4 workers"; }
container_of() { for w in "${workers[@]}"; do if [[ $w == "$1"* ]]; then echo "$w"; fi; done; }
killed=$(container_of "${busy[0]}")
cut=$(container_of "${busy[1]}")
[[ -n $killed && -n $cut ]] || fail "cannot tell which containers the busy workers are in"
network=$(docker inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}' "$cut")
docker kill "$killed" >/dev/null
docker network disconnect "$network" "$cut"
say "killed ${killed:0:12}; cut ${cut:0:12} off $network for ${partition_s} s (lease $((lease_ms / 1000)) s)"
sleep "$partition_s"
docker network connect "$network" "$cut"
say "${cut:0:12} back on $network"

code=$(timeout 300 docker wait "$coordinator") || { logs | tail -n 20 >&2; fail "the sweep did not end within 300 s"; }
[[ $code == 0 ]] || { logs | tail -n 30 >&2; fail "the coordinator exited with $code"; }
docker cp "$coordinator:/var/lib/lrsweep/report.json" "$work/report.json"
expired=$(count lease_expired)
# Every worker but the killed one, the cut-off one included, was in the sweep at its end (on the
# connection it had, or a new one) and exits with it.
for w in "${workers[@]}"; do
    [[ $w == "$killed" ]] && continue
    code=$(timeout 60 docker wait "$w") || fail "worker ${w:0:12} did not exit"
    [[ $code == 0 ]] || fail "worker ${w:0:12} exited with $code"
    if ! docker logs "$w" 2>&1 | grep -q '"event":"shutdown_received"'; then
        docker logs "$w" 2>&1 | tail -n 5 >&2
        fail "worker ${w:0:12} was not in the sweep at its end"
    fi
done

check=$(python3 - "$work/report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
trials = r["trials"]
problems = []
if r["outcome"] != "completed":
    problems.append("outcome " + r["outcome"])
if sorted(t["id"] for t in trials) != list(range(len(trials))):
    problems.append("trial ids are not 0..n, each once")
unfinished = [t["id"] for t in trials if t["status"] not in ("completed", "pruned", "cancelled")]
if unfinished:
    problems.append(f"trials not finished: {unfinished}")
rerun = [t["id"] for t in trials if t["attempts"] >= 2]
if len(rerun) < 2:
    problems.append(f"trials run again: {rerun}, expected the killed and the cut-off worker's")
if r.get("best_lr") is None:
    problems.append("no recommendation")
workers = {t["worker"] for t in trials if t["worker"]}
print("; ".join(problems) if problems else
      f"ok {len(trials)} {len(rerun)} {len(workers)} {r['best_lr']:.4g}")
EOF
)
[[ $check == ok* ]] || fail "$check"
read -r _ trials rerun distinct best <<<"$check"
[[ $expired -ge 2 ]] || fail "$expired lease(s) expired, expected the killed and the cut-off worker's"

echo "compose test: passed in $((SECONDS - started)) s (4 workers; one killed, one cut off ${partition_s} s > lease $((lease_ms / 1000)) s and back; $expired leases expired, $rerun trials run again; all $trials trials finished on $distinct workers; best_lr $best)"
