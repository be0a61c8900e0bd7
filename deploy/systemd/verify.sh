#!/usr/bin/env bash
# Checks both units with `systemd-analyze verify` (any message fails) and rates their hardening
# with `systemd-analyze security --offline` (anything above OK fails). verify wants the
# ExecStart binary to exist, so the units are checked as copies that start the built binaries
# (LRSWEEP_BIN_DIR, else a release build) instead of /usr/local/bin. Installs systemd's tools
# from Debian's packages when absent. The last line is a summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

if ! command -v systemd-analyze >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
if [[ -z ${LRSWEEP_BIN_DIR:-} ]]; then
    cargo build --release --locked --bins -p lrsweep-coordinator -p lrsweep-worker
    LRSWEEP_BIN_DIR=${CARGO_TARGET_DIR:-$repo/target}/release
fi
bin_dir=$(cd "$LRSWEEP_BIN_DIR" && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
summary=()
for unit in deploy/systemd/*.service; do
    name=$(basename "$unit")
    sed "s|/usr/local/bin/|$bin_dir/|" "$unit" >"$work/$name"
    messages=$(systemd-analyze verify "$work/$name" 2>&1) || true
    if [[ -n $messages ]]; then
        echo "$messages" >&2
        echo "systemd units: FAILED (systemd-analyze verify $name)"
        exit 1
    fi
    level=$(systemd-analyze security --offline=true "$work/$name" 2>&1 |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]* [A-Z]*\).*/\1/p')
    if [[ $level != *" OK" ]]; then
        systemd-analyze security --offline=true "$work/$name" >&2 || true
        echo "systemd units: FAILED ($name exposure ${level:-unknown})"
        exit 1
    fi
    summary+=("$name exposure $level")
done
joined=$(printf '; %s' "${summary[@]}")
echo "systemd units: passed ($(systemd-analyze --version | head -n1 | cut -d' ' -f1-2), verify clean$joined)"
