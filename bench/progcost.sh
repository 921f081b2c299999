#!/usr/bin/env bash
# bench/progcost.sh: the kernel's time per connect in each of the collector's
# BPF programs, on the connect storm, with the default receiver config (DNS
# capture on: bench/configs/sink.yaml with BENCH_DNS=true).
#
#   bench/progcost.sh [--collector BIN] [--connects N] [--runs R] [-- --set KEY=VALUE ...]
#
# Turns on kernel.bpf_stats_enabled, starts the collector (default
# _build/otelcol-tcpconnect: `make build`), and for each run reads every tc_*
# program's run_time_ns and run_cnt (bpftool) before and after bench/storm
# makes N connects on one thread to a loopback listener (each closed with an
# RST, as bench/run.sh's storm). Prints per program and run: runs per connect,
# ns per run and ns per connect, and the sum. The counters are the kernel's
# own accounting of each program's run time (no sampling), so they hold on a
# loaded machine better than CPU totals do; they do not include the cost of
# calling a program. Arguments after -- go to the collector (e.g. --set
# receivers::tcpconnect::first_bytes::tls=false).
#
# Needs root, bpftool, gcc, python3. All traffic is on loopback.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
coll=$root/_build/otelcol-tcpconnect connects=100000 runs=3
while [[ $# -gt 0 ]]; do
	case "$1" in
	--collector) coll=$2; shift 2 ;;
	--connects) connects=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--) shift; break ;;
	*) echo "usage: $0 [--collector BIN] [--connects N] [--runs R] [-- collector args]" >&2; exit 2 ;;
	esac
done
tmp=$(mktemp -d)
trap 'kill "$cp" 2>/dev/null; rm -rf "$tmp"' EXIT
gcc -O2 -Wall -pthread -o "$tmp/storm" "$here/storm.c"
sysctl -qw kernel.bpf_stats_enabled=1
BENCH_DNS=true BENCH_HEALTH_PORT=23137 BENCH_METRICS_PORT=0 \
	"$coll" --config "$here/configs/sink.yaml" "$@" >"$tmp/collector.log" 2>&1 &
cp=$!
for ((i = 0; i < 300; i++)); do
	curl -fsS http://127.0.0.1:23137/ >/dev/null 2>&1 && break
	sleep 0.1
done
snap() {
	bpftool -j prog show | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    if p.get("name", "").startswith("tc_"):
        print(p["id"], p["name"], p.get("run_time_ns", 0), p.get("run_cnt", 0))'
}
for ((r = 1; r <= runs; r++)); do
	snap >"$tmp/before"
	"$tmp/storm" -t 1 -n "$connects" -d 120 >&2
	snap >"$tmp/after"
	echo "== run $r: $connects connects, $(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/load /')"
	python3 - "$connects" "$tmp/before" "$tmp/after" <<'PY'
import sys
n = int(sys.argv[1])
before = {}
for line in open(sys.argv[2]):
    i, name, t, c = line.split()
    before[i] = (int(t), int(c))
total = 0
print(f"{'program':24s} {'runs/connect':>12s} {'ns/run':>7s} {'ns/connect':>10s}")
for line in open(sys.argv[3]):
    i, name, t, c = line.split()
    if i not in before:
        continue
    dt, dc = int(t) - before[i][0], int(c) - before[i][1]
    total += dt
    if dc:
        print(f"{name:24s} {dc / n:12.2f} {dt / dc:7.0f} {dt / n:10.0f}")
print(f"{'sum':24s} {'':12s} {'':7s} {total / n:10.0f}")
PY
done
