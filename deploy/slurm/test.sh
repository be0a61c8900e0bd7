#!/usr/bin/env bash
# The sbatch script on a real one-node Slurm cluster made here: installs Slurm and munge from
# Debian's packages when absent, starts slurmctld and slurmd on a private configuration (this
# machine's CPUs, loopback, its own ports and state directory), then
#   1. submits deploy/slurm/lrsweep.sbatch with 2 tasks and scancels it mid-sweep: the report
#      says "interrupted";
#   2. submits it again in the same directory: the sweep resumes from the database and completes.
# Binaries from LRSWEEP_BIN_DIR, else a release build. Run as root. The last line is a summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
started=$SECONDS

say() { echo "slurm-test: $*" >&2; }
fail() {
    say "FAILED: $*"
    echo "slurm test: FAILED ($*)"
    exit 1
}

if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
command -v python3 >/dev/null || apt-get install -y -qq --no-install-recommends python3-minimal >/dev/null

if [[ -z ${LRSWEEP_BIN_DIR:-} ]]; then
    say "building the release binaries"
    cargo build --release --locked --bins -p lrsweep-coordinator -p lrsweep-worker
    LRSWEEP_BIN_DIR=${CARGO_TARGET_DIR:-$repo/target}/release
fi
LRSWEEP_BIN_DIR=$(cd "$LRSWEEP_BIN_DIR" && pwd)
export LRSWEEP_BIN_DIR
for b in lrsweep-coordinator lrsweep-worker; do
    [[ -x $LRSWEEP_BIN_DIR/$b ]] || fail "no $b in $LRSWEEP_BIN_DIR"
done

work=$(mktemp -d /tmp/lrsweep-slurm.XXXXXX)
pids=()
started_munge=
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -n $started_munge ]] && /etc/init.d/munge stop >/dev/null 2>&1
    if [[ -n ${KEEP_WORK:-} ]]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# munge authenticates every Slurm message; the package made the key, the init script starts it.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [[ -s /etc/munge/munge.key ]] || mungekey --create >/dev/null 2>&1 ||
        { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none &&
            chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key; }
    /etc/init.d/munge start >/dev/null
    started_munge=1
    munge -n | unmunge >/dev/null || fail "munged does not answer"
fi

# A cluster of our own: a config file of our own (SLURM_CONF), ports other than Slurm's defaults
# so a real Slurm on this machine is left alone, state under $work. No cgroup plugins:
# proctrack/linuxproc and task/none run anywhere, containers included.
node=$(hostname -s)
cpus=$(nproc)
mkdir -p "$work/state" "$work/spool" "$work/jobs"
cat >"$work/slurm.conf" <<EOF
ClusterName=lrsweep-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=30
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$work/slurm.conf
slurmctld -D -c >"$work/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D >"$work/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
    [[ $(sinfo -h -o %T 2>/dev/null) == idle ]] && break
    sleep 0.1
done
[[ $(sinfo -h -o %T 2>/dev/null) == idle ]] ||
    { tail -n 20 "$work"/slurm*.log >&2 || true; fail "the node never came up idle"; }
say "one-node cluster up: $node, $cpus CPUs"

# Softmax on the digits, two rounds of trials of about a second: time to scancel mid-sweep.
cat >"$work/jobs/search.toml" <<'EOF'
[search]
strategy = "coarse-to-fine"
min_lr = 1e-4
max_lr = 10.0
rounds = 2
candidates_per_round = 3
steps = [20000, 40000]

[trainer]
model = { kind = "softmax" }
EOF

submit() {
    sbatch --parsable --ntasks=2 --chdir="$work/jobs" "$repo/deploy/slurm/lrsweep.sbatch" search.toml
}
state() { scontrol show job "$1" -o 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
ended() { [[ $(state "$1") =~ ^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE)$ ]]; }
wait_job() {
    for _ in $(seq 1200); do
        ended "$1" && { state "$1"; return; }
        sleep 0.1
    done
    fail "job $1 did not end within 120 s"
}
report() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

first=$(submit)
say "job $first submitted"
# Cancel once some trials are done and others are not.
for _ in $(seq 600); do
    grep -q '"event":"trial_completed"' "$work/jobs/lrsweep-$first.log" 2>/dev/null && break
    ended "$first" && break
    sleep 0.1
done
grep -q '"event":"trial_completed"' "$work/jobs/lrsweep-$first.log" 2>/dev/null ||
    { cat "$work/jobs/lrsweep-$first.out" >&2 || true; fail "job $first completed no trial"; }
scancel "$first"
end=$(wait_job "$first")
[[ $end == CANCELLED ]] || fail "job $first ended $end, not CANCELLED"
r1=$work/jobs/lrsweep-report-$first.json
[[ -s $r1 ]] || { cat "$work/jobs/lrsweep-$first.out" >&2; fail "scancel left no report"; }
[[ $(report "$r1" 'r["outcome"]') == interrupted ]] || fail "report of the cancelled job is not interrupted"
done_before=$(report "$r1" 'sum(t["status"] in ("completed","pruned","cancelled") for t in r["trials"])')
say "job $first cancelled: interrupted report with $done_before trials done"

second=$(submit)
say "job $second submitted on the same database"
end=$(wait_job "$second")
[[ $end == COMPLETED ]] || { cat "$work/jobs/lrsweep-$second.out" >&2; fail "job $second ended $end"; }
r2=$work/jobs/lrsweep-report-$second.json
grep -q '"event":"sweep_resumed"' "$work/jobs/lrsweep-$second.log" || fail "job $second did not resume the sweep"
[[ $(report "$r2" 'r["outcome"]') == completed ]] || fail "job $second's report is not completed"
[[ $(report "$r2" 'all(t["status"] in ("completed","pruned","cancelled") for t in r["trials"])') == True ]] ||
    fail "job $second left trials unfinished or failed"
workers=$(report "$r2" 'len({t["worker"] for t in r["trials"] if t["worker"]})')
[[ $workers -ge 2 ]] || fail "trials ran on $workers worker(s), not both tasks"
[[ -s $work/jobs/lrsweep.db ]] || fail "no database in the submit directory"
best=$(report "$r2" 'r.get("best_lr")')
trials=$(report "$r2" 'len(r["trials"])')

echo "slurm test: passed in $((SECONDS - started)) s (job $first cancelled with $done_before trials done, interrupted report; job $second resumed them and completed $trials trials on $workers workers in all, best_lr $best)"
