#!/usr/bin/env bash
# bench/fbcost.sh: what the collector's per-packet eBPF programs cost traffic
# that is not connecting (issue 19 item 5), and a connect storm of TLS
# clients; no collector, BASE's and NEW's, in alternating runs in one
# invocation; prints ratios (benchtool fbcost).
#
#   bench/fbcost.sh BASE NEW [--pairs N] [--loads writes,pingpong,tls]
#                   [--writes N] [--roundtrips N] [--size B] [--connects N]
#                   [--variants none,base,new] [--bpf-stats] [--out DIR]
#   make bench-fbcost BASE=main NEW=<commit> [FB_ARGS='--pairs 6']
#
# BASE and NEW are commit-ishes, each built once with its own `make build`
# in a git worktree and kept as _build/ab/COMMIT/otelcol-tcpconnect (the
# cache bench/ab.sh keeps: bench/collector.sh); NEW may be `.`, the working
# tree (make build). --build-only builds both collectors and stops.
# Both run bench/configs/sink.yaml with DNS on: the receiver's defaults
# (DNS capture on, the outcome on, and whatever else a commit turns on by
# default, e.g. first-bytes capture), records counted by a debug exporter.
#
# Loads (each run is one of: no collector, BASE's, NEW's; pair P runs them
# in the P-th of the six orders, so each takes each place):
#   writes    bench/writes.c: one loopback TCP connection, TCP_NODELAY, one
#             thread writing --writes writes of --size bytes (default
#             2,000,000 x 64), one thread reading them; rate = writes/s.
#             On loopback the writes coalesce (segs_per_write says how far).
#   pingpong  the same with every write echoed before the next (writes -p):
#             one segment each way per write; rate = round trips/s.
#   tls       bench/tlsstorm: --connects connects (default 6,000), each a
#             full crypto/tls handshake (Go's default client config) to a
#             crypto/tls server on loopback, then a close; rate = connects/s.
# Variants (--variants, default none,base,new): none (no collector), base,
# new, and base-nofb / new-nofb: that collector with first_bytes.tls and
# first_bytes.http false (a commit with the first_bytes section), which
# isolates what first-bytes capture costs from what a collector's presence
# does. On this VM any collector running, even one with no per-packet
# program attached (DNS off), makes the loopback stream about 1.7x faster
# than no collector (idle vCPUs are slow to wake; a process that wakes now
# and then keeps them warm): read the none ratios with that in mind.
#
# Per run: the load's rate, the collector's CPU over the load (to the sink
# having counted every record the receiver read), the ClientHellos its
# receiver parsed (fb_tls; 0 for a commit without first bytes), and the
# loss check (the
# receiver read at least the load's connects, the sink counted what it
# read, the kernel loss counter 0).
#
# With --bpf-stats, after the pairs, one more run per load and collector
# with the kernel's run-time accounting on (BPF_ENABLE_STATS held by
# benchtool bpfstats -hold; kernel.bpf_stats_enabled is not touched): the
# run time and run count of each of the collector's programs over the load
# (tc_fb_egress, tc_dns_egress, ...). Those runs are left out of the
# ratios: the accounting itself costs each program run two clock reads.
#
# Needs root, git, gcc, go. All traffic is on loopback.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=bench/collector.sh
. "$here/collector.sh"

usage() {
	echo "usage: $0 BASE NEW [--pairs N] [--loads writes,pingpong,tls] [--variants none,base,new,new-nofb] [--writes N] [--roundtrips N] [--size B] [--connects N] [--bpf-stats] [--out DIR] [--build-only]" >&2
	exit 2
}
[[ $# -ge 2 && $1 != -* && $2 != -* ]] || usage
base=$1 new=$2
shift 2
pairs=6 variants=none,base,new loads=writes,pingpong,tls writes=2000000 roundtrips=200000 size=64 connects=6000 bpf_stats=0 build_only=0
out="/tmp/tcpconnect-bench/fbcost-$(date +%Y%m%d-%H%M%S)"
while [[ $# -gt 0 ]]; do
	case "$1" in
	--pairs) pairs=$2; shift 2 ;;
	--loads) loads=$2; shift 2 ;;
	--variants) variants=$2; shift 2 ;;
	--writes) writes=$2; shift 2 ;;
	--roundtrips) roundtrips=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--connects) connects=$2; shift 2 ;;
	--bpf-stats) bpf_stats=1; shift ;;
	--out) out=$2; shift 2 ;;
	--build-only) build_only=1; shift ;;
	*) usage ;;
	esac
done
for v in "$pairs" "$writes" "$roundtrips" "$size" "$connects"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || usage
done
[[ $pairs -le 60 ]] || usage
for l in ${loads//,/ }; do
	case $l in writes | pingpong | tls) ;; *) echo "unknown load $l" >&2; usage ;; esac
done
for v in ${variants//,/ }; do
	case $v in none | base | new | base-nofb | new-nofb) ;; *) echo "unknown variant $v" >&2; usage ;; esac
done
[[ $(id -u) == 0 ]] || { echo "fbcost.sh loads eBPF programs: run as root" >&2; exit 1; }

cd "$root"
collector_of "$base"
col_base=$bin_path
collector_of "$new"
col_new=$bin_path
if [[ $build_only == 1 ]]; then
	echo "base: $col_base; new: $col_new" >&2
	exit 0
fi

mkdir -p "$out/bin"
bin=$out/bin
gcc -O2 -Wall -pthread -o "$bin/writes" "$here/writes.c"
go build -o "$bin/benchtool" ./bench/benchtool
go build -o "$bin/tlsstorm" ./bench/tlsstorm
describe() { if [[ $1 == . ]]; then echo "working tree at $(git rev-parse HEAD)"; else echo "$1 $(git rev-parse "$1^{commit}")"; fi; }
{
	echo "base: $(describe "$base")"
	echo "new: $(describe "$new")"
	echo "run: bench/fbcost.sh $base $new --pairs $pairs --loads $loads --writes $writes --roundtrips $roundtrips --size $size --connects $connects --variants $variants$([[ $bpf_stats == 1 ]] && echo ' --bpf-stats')"
	echo "machine: $(nproc) CPUs, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/fbcost.txt" >&2

health_port=23133 metrics_port=28888
pids=()
cleanup() { local p; for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

stop() { # stop PID: SIGTERM, up to 10 s, then SIGKILL
	local p=$1 i
	kill -TERM "$p" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}
metric() { # metric NAME: the sum of the collector's series NAME (0 if none yet)
	local m
	m=$(curl -fsS "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null) || { echo NA; return; }
	awk -v n="$1" '$1 ~ n && $1 !~ /^#/ { s += $NF } END { printf "%d", s }' <<<"$m"
}
kv() { # kv KEY LINE
	local f
	for f in $2; do [[ $f == "$1="* ]] && { echo "${f#*=}"; return; }; done
	echo NA
}
# cpu_of PID: the CPU time of PID's threads in ns (schedstat: exact, where
# /proc/PID/stat counts 10 ms ticks).
cpu_of() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'; }

# load_cmd LOAD: the load's command line.
load_cmd() {
	case $1 in
	writes) echo "$bin/writes -n $writes -s $size" ;;
	pingpong) echo "$bin/writes -p -n $roundtrips -s $size" ;;
	tls) echo "$bin/tlsstorm -n $connects -d 600s" ;;
	esac
}

results=$out/results.tsv
printf 'load\tvariant\tpair\tpos\tstats\trate\tunits\tseconds\tcpu_s\trecv\tsink\tkernel_lost\tsegs_per_write\tfb_ns\tfb_runs\tdns_ns\tdns_runs\tprogs\tloadavg\tfb_tls\n' >"$results"

# one_run LOAD VARIANT PAIR POS STATS: one run of LOAD with VARIANT's collector (none, base, new).
one_run() {
	local load=$1 variant=$2 pair=$3 pos=$4 stats=$5 col="" exe line cpu=NA recv=NA sink=NA lost=NA
	local tag="$load-$variant-$pair" r0 s0 t0 fbtls=NA c0 st0="" st1="" i hold="" s sets=()
	case $variant in base*) exe=$col_base ;; new*) exe=$col_new ;; *) exe="" ;; esac
	if [[ $variant == *-nofb ]]; then
		sets=(--set receivers::tcpconnect::first_bytes::tls=false --set receivers::tcpconnect::first_bytes::http=false)
	fi
	if [[ -n $exe ]]; then
		BENCH_DNS=true BENCH_HEALTH_PORT=$health_port BENCH_METRICS_PORT=$metrics_port BENCH_OUT=/dev/null \
			"$exe" --config "$here/configs/sink.yaml" "${sets[@]}" >"$out/$tag.log" 2>&1 &
		col=$!
		pids+=("$col")
		for ((i = 0; i < 300; i++)); do
			kill -0 "$col" 2>/dev/null || { echo "collector exited: $out/$tag.log" >&2; exit 1; }
			curl -fsS "http://127.0.0.1:$health_port/" >/dev/null 2>&1 && break
			sleep 0.1
		done
		sleep 1
		if [[ $stats == 1 ]]; then
			"$bin/benchtool" bpfstats -hold >"$out/$tag.hold" &
			hold=$!
			pids+=("$hold")
			for ((i = 0; i < 50; i++)); do grep -q stats=on "$out/$tag.hold" 2>/dev/null && break; sleep 0.1; done
			st0=$("$bin/benchtool" bpfstats -pid "$col")
		fi
		r0=$(metric tcpconnect_connects_received)
		s0=$(metric otelcol_exporter_sent_log_records)
		t0=$(metric 'tcpconnect_first_bytes[{].*result="tls"')
		c0=$(cpu_of "$col")
	fi
	echo "== $tag" >&2
	line=$($(load_cmd "$load"))
	echo "$line" >"$out/$tag.load"
	if [[ -n $col ]]; then
		[[ -n $st0 ]] && st1=$("$bin/benchtool" bpfstats -pid "$col")
		# The receiver's read count is updated every poll: read it after
		# one; then until the sink has counted as many (at most 30 s).
		sleep 0.5
		recv=$(($(metric tcpconnect_connects_received) - r0))
		for ((i = 0; i < 300; i++)); do
			s=$(metric otelcol_exporter_sent_log_records)
			[[ $s != NA && $((s - s0)) -ge $recv ]] && break
			sleep 0.1
		done
		sink=$(($(metric otelcol_exporter_sent_log_records) - s0))
		lost=$(metric tcpconnect_connects_lost)
		fbtls=$(($(metric 'tcpconnect_first_bytes[{].*result="tls"') - t0))
		cpu=$(awk -v a="$c0" -v b="$(cpu_of "$col")" 'BEGIN { printf "%.6f", (b - a) / 1e9 }')
		stop "$col"
		[[ -n $hold ]] && stop "$hold"
	fi
	local units fb_ns=NA fb_runs=NA dns_ns=NA dns_runs=NA progs=NA
	case $load in writes | pingpong) units=$(kv writes "$line") ;; tls) units=$(kv connects "$line") ;; esac
	if [[ -n $st1 ]]; then
		d() { echo $(($(kv "$1" "$st1") - $(kv "$1" "$st0"))); }
		progs=$(kv progs "$st1")
		if [[ $(kv tc_fb_egress_ns "$st1") != NA ]]; then fb_ns=$(d tc_fb_egress_ns) fb_runs=$(d tc_fb_egress_runs); fi
		if [[ $(kv tc_dns_egress_ns "$st1") != NA ]]; then dns_ns=$(d tc_dns_egress_ns) dns_runs=$(d tc_dns_egress_runs); fi
		echo "$st0" >"$out/$tag.bpfstats"
		echo "$st1" >>"$out/$tag.bpfstats"
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$load" "$variant" "$pair" "$pos" "$stats" "$(kv rate "$line")" "$units" "$(kv seconds "$line")" \
		"$cpu" "$recv" "$sink" "$lost" "$(kv segs_per_write "$line")" "$fb_ns" "$fb_runs" "$dns_ns" "$dns_runs" \
		"$progs" "$(cut -d' ' -f1 /proc/loadavg)" "$fbtls" | tee -a "$results" >&2
}

# order P: the variants rotated by (P-1) mod n, reversed every other n
# pairs (for three variants, all six orders in six pairs).
read -ra vs <<<"${variants//,/ }"
order() {
	local p=$1 n=${#vs[@]} k i o=()
	k=$(((p - 1) % n))
	for ((i = 0; i < n; i++)); do o+=("${vs[$(((k + i) % n))]}"); done
	if (((p - 1) / n % 2)); then
		for ((i = n - 1; i >= 0; i--)); do echo "${o[$i]}"; done
	else
		printf '%s\n' "${o[@]}"
	fi
}
for ((p = 1; p <= pairs; p++)); do
	for load in ${loads//,/ }; do
		pos=0
		for v in $(order "$p"); do
			pos=$((pos + 1))
			one_run "$load" "$v" "$p" "$pos" 0
		done
	done
done
if [[ $bpf_stats == 1 ]]; then
	for load in ${loads//,/ }; do
		for v in "${vs[@]}"; do
			if [[ $v != none ]]; then one_run "$load" "$v" stats 1 1; fi
		done
	done
fi
"$bin/benchtool" fbcost -in "$results" | tee -a "$out/fbcost.txt"
echo "== rows: $results; summary: $out/fbcost.txt" >&2
