#!/usr/bin/env bash
# bench/ab.sh: a base commit's collector against the working tree's, in one
# run, in alternating pairs; prints the new/base ratios.
#
#   bench/ab.sh BASE [--pairs N] [--connects N] [--threads T] [--setups LIST]
#   make bench-ab BASE=main                      (the same, with the defaults)
#
# BASE is any commit-ish. Its collector is built with its own `make build` in
# a git worktree under _build/ab/ and kept as _build/ab/COMMIT/otelcol-tcpconnect
# (the next run with the same commit reuses it; bench/collector.sh); the
# working tree's is built by `make build`. Then bench/run.sh --ab runs, per setup and pair, the storm
# alone, with the base collector and with the new one (bare, base, new; then
# new, base, bare), and benchtool ab prints, per setup: the new/base ratio of
# collector CPU per connect (median and range over pairs), each collector's
# CPU per connect and the storm rate it kept (monitored / bare), and the loss
# check of every run.
#
# Default: a one-thread storm of 60,000 connects, 5 pairs, the setups
#   sink     tcpconnect -> batch -> debug exporter (basic: counts only)
#   file     tcpconnect -> batch -> file exporter (OTLP JSON)
#   agent    deploy/kubernetes/agent.yaml's collector config and env, OTLP to
#            a second collector
#   bpftrace bench/tcpconnect.bt, as the reference (its own A/B pair)
# Loss is checked per run: file, agent and bpftrace count the storm's own
# records (its pid and listener port) in the output against the connects it
# made; sink compares the records its exporter took with the receiver's
# read count (all of the host's connects: at least the storm's) and the
# kernel loss counter.
#
# Both collectors read the working tree's bench/configs; a base too old for
# a config's keys fails at start (see its log under the run's directory).
# Needs root, git, gcc, go; bpftrace for the bpftrace setup. All traffic is
# on loopback.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=bench/collector.sh
. "$here/collector.sh"

usage() {
	echo "usage: $0 BASE [--pairs N] [--connects N] [--threads T] [--setups LIST] [--out DIR] [--build-only]" >&2
	exit 2
}

[[ $# -ge 1 && $1 != -* ]] || usage
base=$1
shift
pairs=5 connects=60000 threads=1 setups=sink,file,agent,bpftrace build_only=0
out="/tmp/tcpconnect-bench/ab-$(date +%Y%m%d-%H%M%S)"
while [[ $# -gt 0 ]]; do
	case "$1" in
	--pairs) pairs=$2; shift 2 ;;
	--connects) connects=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--setups) setups=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--build-only) build_only=1; shift ;;
	*) usage ;;
	esac
done
[[ $connects =~ ^[1-9][0-9]*$ ]] || usage

cd "$root"
commit=$(git rev-parse --verify "$base^{commit}")
collector_of "$base"
cached=$bin_path
collector_of .
if [[ $build_only == 1 ]]; then
	echo "base: $cached; new: $root/_build/otelcol-tcpconnect" >&2
	exit 0
fi

mkdir -p "$out"
{
	echo "base: $base $commit"
	echo "new: working tree at $(git rev-parse HEAD)$(git diff --quiet HEAD -- . ':!bench' || echo ' (plus uncommitted changes)')"
	echo "run: bench/ab.sh $base --pairs $pairs --connects $connects --threads $threads --setups $setups"
	echo "machine: $(nproc) CPUs, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/ab.txt" >&2
# --seconds is only the storm's upper bound here: --connects ends it.
bench/run.sh --ab --interleave --collector-base "$cached" --pairs "$pairs" --threads "$threads" \
	--connects "$connects" --seconds 120 --loads connect --setups "$setups" --cache-names 0 --out "$out"
"$out/bin/benchtool" ab -in "$out/results.tsv" | tee -a "$out/ab.txt"
echo "== rows: $out/results.tsv; summary: $out/ab.txt" >&2
