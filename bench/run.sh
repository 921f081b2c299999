#!/usr/bin/env bash
# bench/run.sh: connect-storm overhead of the tcpconnect collector, A/B.
#
# For every setup and pair it runs the storm without monitoring (A) and with
# the monitor running (B), in alternating order (A B, then B A, ...), and
# writes one TSV row per pair; then a markdown table (benchtool table).
#
#   bench/run.sh --pairs 5 --threads 2 --seconds 5
#
# Setups: file (tcpconnect -> batch -> file), direct (tcpconnect -> file),
# otlp (tcpconnect -> batch -> OTLP -> second collector -> file), otlp-agg
# (the same with aggregation.enabled and aggregation.window 1s; its rows are
# skipped, with a message, when the collector refuses those keys), debug
# (tcpconnect -> debug exporter: the receiver's own CPU), sink (tcpconnect
# -> batch -> debug exporter at verbosity basic, which only counts: the
# receiver path), agent (the node agent exactly as deploy/kubernetes/agent.yaml
# ships it: its ConfigMap's collector config and its container's GOGC and
# GOMEMLIMIT, only the addresses moved to loopback, exporting to a second
# collector), bpftrace (a tcpconnect-style bpftrace script). A collector setup with a suffix @gogcN
# (e.g. debug@gogc400) runs with GOGC=N; with @base, the collector of
# --collector-base (e.g. one built from main, for before/after in one run);
# with @memN, GOMEMLIMIT=NMiB;
# an otlp or agent setup with @compNAME exports with compression NAME (gzip,
# snappy, zstd, none); with @pool, the collector runs with
# its alpha feature gate pdata.useProtoPooling (agent only, for the otlp setups). Loads: connect (the storm alone,
# every connect to one destination, 127.0.0.1:PORT), unique (the storm with
# each connect to the next of --unique loopback addresses) and dns (the
# storm plus a paced DNS answer storm on 127.0.0.77:53, DNS capture on).
#
# The issue-9 side-by-side comparison (BENCHMARKS.md):
#   bench/run.sh --pairs 3 --threads 2 --seconds 5 --loads connect,unique \
#     --setups debug,debug@gogc400,otlp,otlp-agg,bpftrace --cache-names 0
# Last, a cache fill: --cache-names unique names answered while the collector
# runs with DNS on, then its peak RSS.
#
# With --connects N every storm stops after N connects (--seconds stays its
# upper bound). With --ab (needs --collector-base) every collector setup S is
# measured as S@base and S in the same pair: each pair runs the storm alone,
# with the base collector and with this one, in alternating order (bare,
# base, new; then new, base, bare); bench/ab.sh builds both and prints the
# new/base ratios (benchtool ab). With --interleave the pairs of all setups
# take turns (pair 1 of each setup, then pair 2, ...), for comparing setups
# with each other (e.g. agent@compgzip,agent@compzstd).
#
# Needs root (eBPF), gcc, go; bpftrace for the bpftrace setup. Every loop is
# bounded; all traffic is on loopback.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

pairs=5
threads=2
seconds=5
sample_every=100
setups="file,otlp,bpftrace,debug,direct"
loads="connect,dns"
dns_qps=5000
unique=100000
cache_names=100000
collector="$root/_build/otelcol-tcpconnect"
collector_base=""
connects_max=0
ab=0
interleave=0
out="/tmp/tcpconnect-bench/$(date +%Y%m%d-%H%M%S)"

usage() {
	cat <<EOF
usage: $0 [--pairs N] [--threads T] [--seconds S] [--setups LIST] [--loads LIST]
          [--dns-qps Q] [--cache-names N] [--sample-every K] [--unique N] [--collector PATH]
          [--collector-base PATH] [--connects N] [--ab] [--out DIR]
  --setups  comma list of file,direct,otlp,otlp-agg,debug,sink,agent,bpftrace
            (default $setups); a collector setup may end in @gogcN (GOGC=N for
            its collector), @memN (GOMEMLIMIT=NMiB), @compNAME (otlp, agent)
            and @base (the --collector-base binary instead of --collector)
  --connects stop each storm after N connects (0: only --seconds bounds it)
  --ab      each pair: storm alone, S@base and S (alternating order)
  --interleave  pair 1 of every setup, then pair 2 of every setup, ...
            (instead of all pairs of one setup, then the next): setups
            compared with each other see the same machine
  --loads   comma list of connect,unique,dns (default $loads)
  --unique  destinations the unique load cycles over (default $unique)
  --cache-names 0 skips the cache-fill measurement
EOF
	exit 2
}

while [[ $# -gt 0 ]]; do
	case "$1" in
	--pairs) pairs=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	--setups) setups=$2; shift 2 ;;
	--loads) loads=$2; shift 2 ;;
	--dns-qps) dns_qps=$2; shift 2 ;;
	--cache-names) cache_names=$2; shift 2 ;;
	--sample-every) sample_every=$2; shift 2 ;;
	--unique) unique=$2; shift 2 ;;
	--collector) collector=$2; shift 2 ;;
	--collector-base) collector_base=$2; shift 2 ;;
	--connects) connects_max=$2; shift 2 ;;
	--ab) ab=1; shift ;;
	--interleave) interleave=1; shift ;;
	--out) out=$2; shift 2 ;;
	*) usage ;;
	esac
done
[[ $pairs =~ ^[0-9]+$ && $pairs -ge 1 && $pairs -le 50 ]] || usage
[[ $seconds =~ ^[0-9]+$ && $seconds -ge 1 && $seconds -le 120 ]] || usage
[[ $threads =~ ^[0-9]+$ && $threads -ge 1 && $threads -le 64 ]] || usage
[[ $cache_names =~ ^[0-9]+$ && $cache_names -le 1000000 ]] || usage
[[ $unique =~ ^[0-9]+$ && $unique -ge 1 && $unique -le 524288 ]] || usage
[[ $connects_max =~ ^[0-9]+$ ]] || usage
if [[ $ab == 1 && ! -x $collector_base ]]; then
	echo "--ab needs --collector-base (not executable: '$collector_base')" >&2
	exit 1
fi
[[ $(id -u) == 0 ]] || { echo "run.sh loads eBPF programs: run as root" >&2; exit 1; }

mkdir -p "$out"
bin="$out/bin"
mkdir -p "$bin"
echo "== building the generators into $bin" >&2
gcc -O2 -Wall -pthread -o "$bin/storm" "$here/storm.c"
(cd "$root" && go build -o "$bin/benchtool" ./bench/benchtool && go build -o "$bin/dnsstorm" ./bench/dnsstorm)

needs_collector=0
for s in ${setups//,/ }; do
	case ${s%%@*} in
	file | direct | otlp | otlp-agg | debug | sink | agent) needs_collector=1 ;;
	bpftrace) command -v bpftrace >/dev/null || { echo "bpftrace not installed (apt-get install bpftrace)" >&2; exit 1; } ;;
	*) echo "unknown setup $s" >&2; usage ;;
	esac
	if [[ $s == *@* ]]; then
		suffixes=${s#*@}
		for o in ${suffixes//@/ }; do
			[[ $o =~ ^(gogc[0-9]+|mem[0-9]+|base|pool|comp(gzip|snappy|zstd|none))$ && ${s%%@*} != bpftrace ]] ||
				{ echo "setup $s: the suffixes are @gogcN, @memN, @base, @pool and @compNAME (otlp, agent), on a collector setup" >&2; usage; }
			if [[ $o == comp* && ${s%%@*} != otlp* && ${s%%@*} != agent ]]; then
				echo "setup $s: @compNAME is for the otlp and agent setups" >&2
				usage
			fi
		done
		if [[ $s == *@base* && ! -x $collector_base ]]; then
			echo "setup $s needs --collector-base (not executable: '$collector_base')" >&2
			exit 1
		fi
	fi
done
for l in ${loads//,/ }; do
	case $l in
	connect | unique | dns) ;;
	*) echo "unknown load $l" >&2; usage ;;
	esac
done
if [[ $needs_collector == 1 && ! -x $collector ]]; then
	echo "collector $collector not built (make build)" >&2
	exit 1
fi
# The agent setup: the collector config of deploy/kubernetes/agent.yaml's
# ConfigMap with its addresses moved to loopback (health check, metrics, the
# gateway) and its metrics level raised to normal (run.sh reads the
# receiver's counters), and the agent container's GOGC and GOMEMLIMIT.
agent_yaml="$root/deploy/kubernetes/agent.yaml"
agent_gogc="" agent_memlimit=""
if [[ ,$setups, == *,agent[,@]* ]]; then
	awk '/^  config.yaml: \|$/ { on = 1; next } on && /^---/ { exit } on { sub(/^    /, ""); print }' "$agent_yaml" |
		sed -e 's/0\.0\.0\.0:13133/127.0.0.1:${env:BENCH_HEALTH_PORT}/' \
			-e 's/host: 0\.0\.0\.0/host: 127.0.0.1/' -e 's/port: 8888/port: ${env:BENCH_METRICS_PORT}/' \
			-e 's/level: basic/level: normal/' \
			-e 's/endpoint: tcpconnect-gateway[^ ]*/endpoint: 127.0.0.1:${env:BENCH_OTLP_PORT}/' >"$out/agent.yaml"
	for k in 13133 8888 tcpconnect-gateway; do
		if grep -q "$k" "$out/agent.yaml"; then
			echo "agent.yaml: $k left in the extracted config ($out/agent.yaml); update run.sh's rewrite" >&2
			exit 1
		fi
	done
	# env entries of the agent container: "- name: GOGC" then "value: ...".
	agent_env() {
		awk -v k="$1" '$0 ~ "- name: " k "$" { getline; if ($1 == "value:") { gsub(/"/, "", $2); print $2 } }' "$agent_yaml"
	}
	agent_gogc=$(agent_env GOGC)
	agent_memlimit=$(agent_env GOMEMLIMIT)
	echo "== agent: $out/agent.yaml from $agent_yaml; GOGC='$agent_gogc' GOMEMLIMIT='$agent_memlimit'" >&2
fi
# Aggregation (issue 9) is a receiver option a collector built before it
# refuses: then the otlp-agg rows are left out, said here and in the table.
agg_note=""
if [[ ,$setups, == *,otlp-agg* ]]; then
	if ! agg_err=$(BENCH_OUT=/dev/null BENCH_DNS=false BENCH_HEALTH_PORT=1 BENCH_METRICS_PORT=2 BENCH_OTLP_PORT=3 \
		"$collector" validate --config "$here/configs/otlp-agent-agg.yaml" 2>&1); then
		agg_note="otlp-agg skipped: $collector refuses aggregation.enabled/aggregation.window (a build without issue 9's aggregation): $(tail -n1 <<<"$agg_err")"
		echo "== $agg_note" >&2
		setups=$(tr ',' '\n' <<<"$setups" | grep -v '^otlp-agg' | paste -sd, -)
	fi
fi
if [[ ,$setups, == *,bpftrace,* ]] && ! grep -q ' tracefs ' /proc/mounts; then
	echo "== mounting tracefs on /sys/kernel/tracing (bpftrace tracepoints need it)" >&2
	mount -t tracefs tracefs /sys/kernel/tracing
fi

health_port=23133
metrics_port=28888
gw_health_port=23134
otlp_port=24317
pids=()

cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT

# stop PID: SIGTERM, wait up to 10 s, then SIGKILL.
stop() {
	local p=$1 i
	kill -TERM "$p" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}

# wait_health PORT PID: until the health check says ready (at most 30 s).
wait_health() {
	local port=$1 p=$2 i
	for ((i = 0; i < 300; i++)); do
		kill -0 "$p" 2>/dev/null || { echo "collector $p exited; see its log" >&2; return 1; }
		if curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	echo "collector $p not ready in 30 s" >&2
	return 1
}

# wait_quiet FILE: until FILE has not grown for 1.5 s (at most 60 s).
wait_quiet() {
	local f=$1 last=-1 same=0 i size
	for ((i = 0; i < 600; i++)); do
		size=$(stat -c %s "$f" 2>/dev/null || echo 0)
		if [[ $size == "$last" ]]; then
			same=$((same + 1))
			[[ $same -ge 15 ]] && return 0
		else
			same=0
			last=$size
		fi
		sleep 0.1
	done
}

# metric NAME: the sum of the receiver's Prometheus series matching NAME;
# 0 when the collector answers without that series (the receiver creates a
# counter's series on its first increment), NA when it does not answer.
metric() {
	local m
	if ! m=$(curl -fsS "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null); then
		echo NA
		return
	fi
	awk -v n="$1" '$1 ~ n && $1 !~ /^#/ { s += $NF } END { printf "%d", s }' <<<"$m"
}

kv() { # kv KEY LINE: the value of KEY=... in LINE
	local k=$1 line=$2 f
	for f in $line; do
		if [[ $f == "$k="* ]]; then
			echo "${f#*=}"
			return
		fi
	done
	echo NA
}

start_dns_load() { # start_dns_load LOG: the paced DNS storm in the background
	"$bin/dnsstorm" -listen 127.0.0.77:53 -workers 2 -qps "$dns_qps" -count 10000000 \
		-duration "$((seconds + 2))s" >"$1" 2>&1 &
	dns_pid=$!
	pids+=("$dns_pid")
	sleep 0.5
}

# run_storm LOAD TAG: one storm run; sets storm_line.
run_storm() {
	local load=$1 tag=$2 u=0
	if [[ $load == unique ]]; then u=$unique; fi
	storm_line=$("$bin/storm" -t "$threads" -d "$seconds" -n "$connects_max" -k "$sample_every" -o "$out/$tag.samples" -u "$u")
	echo "$storm_line" >"$out/$tag.storm"
}

# run_a LOAD TAG: the storm without monitoring.
run_a() {
	local load=$1 tag=$2
	dns_line=""
	if [[ $load == dns ]]; then start_dns_load "$out/$tag.dns"; fi
	run_storm "$load" "$tag"
	if [[ $load == dns ]]; then
		wait "$dns_pid" || true
		dns_line=$(cat "$out/$tag.dns")
	fi
	rate_a=$(kv rate "$storm_line")
	dnsq_a=$(kv qps "$dns_line")
}

# wire_bytes PORT: bytes_acked summed over the established TCP connections to
# 127.0.0.1:PORT (the agent's gRPC connection to the gateway: what it sent).
wire_bytes() {
	ss -Htin state established "( dport = :$1 )" 2>/dev/null |
		awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^bytes_acked:/) { split($i, a, ":"); s += a[2] } } END { printf "%d", s }'
}

# wait_sink R0 S0: sets sink_read, the records the receiver read since R0 by
# the end of the storm (its counter is updated every poll interval: read
# 0.3 s after the storm), and waits until the sink setup's exporter has
# counted at least as many since S0 (at most 30 s). The host's other
# connects keep both counters moving, so they are compared at that mark,
# not for equality.
wait_sink() {
	local r0=$1 s0=$2 i s
	sleep 0.3
	sink_read=$(($(metric tcpconnect_connects_received) - r0))
	for ((i = 0; i < 300; i++)); do
		s=$(metric otelcol_exporter_sent_log_records)
		if [[ $s != NA && $((s - s0)) -ge $sink_read ]]; then return 0; fi
		sleep 0.1
	done
	echo "sink: the exporter did not count the receiver's $sink_read records in 30 s" >&2
}

# run_b LOAD SETUP TAG: the storm with SETUP monitoring; sets the row fields.
run_b() {
	local load=$1 setup=${2%%@*} tag=$3 dns=false col="" gw="" bt="" watch="" gogc=${GOGC:-} memlimit=${GOMEMLIMIT:-} collector=$collector
	local outf="$out/$tag.out"
	local cpu0 cpu1 recv0 recv1 sent0 gwcpu0 wire0 pstat
	if [[ $load == dns ]]; then dns=true; fi
	if [[ $setup == agent ]]; then
		gogc=${agent_gogc:-$gogc}
		memlimit=${agent_memlimit:-$memlimit}
	fi
	if [[ $2 =~ @gogc([0-9]+) ]]; then gogc=${BASH_REMATCH[1]}; fi
	if [[ $2 =~ @mem([0-9]+) ]]; then memlimit=${BASH_REMATCH[1]}MiB; fi
	if [[ $2 == *@base* ]]; then collector=$collector_base; fi
	local comp=gzip gates=() sets=()
	if [[ $2 =~ @comp([a-z]+) ]]; then
		comp=${BASH_REMATCH[1]}
		sets=(--set "exporters::otlp_grpc::compression=$comp")
	fi
	if [[ $2 == *@pool* ]]; then gates=(--feature-gates=pdata.useProtoPooling); fi
	export BENCH_DNS=$dns BENCH_HEALTH_PORT=$health_port BENCH_METRICS_PORT=$metrics_port BENCH_OTLP_PORT=$otlp_port
	rm -f "$outf"
	case $setup in
	file | direct | debug | sink)
		BENCH_OUT=$outf GOGC=$gogc GOMEMLIMIT=$memlimit "$collector" --config "$here/configs/$setup.yaml" "${gates[@]}" >"$out/$tag.log" 2>&1 &
		col=$!
		pids+=("$col")
		wait_health "$health_port" "$col"
		;;
	otlp | otlp-agg | agent)
		BENCH_OUT=$outf BENCH_HEALTH_PORT=$gw_health_port BENCH_METRICS_PORT=0 \
			"$collector" --config "$here/configs/otlp-gateway.yaml" >"$out/$tag.gw.log" 2>&1 &
		gw=$!
		pids+=("$gw")
		wait_health "$gw_health_port" "$gw"
		if [[ $setup == agent ]]; then
			BENCH_OUT=/dev/null GOGC=$gogc GOMEMLIMIT=$memlimit "$collector" --config "$out/agent.yaml" "${sets[@]}" "${gates[@]}" >"$out/$tag.log" 2>&1 &
		else
			local agent=otlp-agent
			if [[ $setup == otlp-agg ]]; then agent=otlp-agent-agg; fi
			BENCH_OUT=/dev/null GOGC=$gogc GOMEMLIMIT=$memlimit BENCH_OTLP_COMPRESSION=$comp "$collector" --config "$here/configs/$agent.yaml" "${gates[@]}" >"$out/$tag.log" 2>&1 &
		fi
		col=$!
		pids+=("$col")
		wait_health "$health_port" "$col"
		;;
	bpftrace)
		bpftrace -o "$outf" "$here/tcpconnect.bt" >"$out/$tag.log" 2>&1 &
		bt=$!
		pids+=("$bt")
		local i
		for ((i = 0; i < 300; i++)); do
			grep -q Attaching "$outf" 2>/dev/null && break
			sleep 0.1
		done
		sleep 0.5
		;;
	esac
	if [[ $setup != debug && $setup != sink ]]; then
		: >>"$outf"
		"$bin/benchtool" watch -file "$outf" -out "$out/$tag.watch" -max 10m &
		watch=$!
		pids+=("$watch")
	fi
	local mon=${col:-$bt}
	cpu0=$(kv cpu_seconds "$("$bin/benchtool" proc -pid "$mon")")
	gwcpu0=NA wire0=NA
	if [[ -n $gw ]]; then
		gwcpu0=$(kv cpu_seconds "$("$bin/benchtool" proc -pid "$gw")")
		wire0=$(wire_bytes "$otlp_port")
	fi
	recv0=NA sent0=NA
	if [[ -n $col ]]; then
		recv0=$(metric tcpconnect_connects_received)
		sent0=$(metric otelcol_exporter_sent_log_records)
	fi
	dns_line=""
	if [[ $load == dns ]]; then start_dns_load "$out/$tag.dns"; fi
	run_storm "$load" "$tag"
	if [[ $load == dns ]]; then
		wait "$dns_pid" || true
		dns_line=$(cat "$out/$tag.dns")
	fi
	case $setup in
	debug) sleep 1.5 ;;
	sink) wait_sink "$recv0" "$sent0" ;;
	*) wait_quiet "$outf" ;;
	esac
	pstat=$("$bin/benchtool" proc -pid "$mon")
	cpu1=$(kv cpu_seconds "$pstat")
	hwm=$(kv hwm_mib "$pstat")
	gw_cpu=NA wire=NA
	if [[ -n $gw ]]; then
		gw_cpu=$(awk -v a="$gwcpu0" -v b="$(kv cpu_seconds "$("$bin/benchtool" proc -pid "$gw")")" 'BEGIN { printf "%.2f", b - a }')
		wire=$(($(wire_bytes "$otlp_port") - wire0))
	fi
	lost=NA recv1=NA dnslost=NA sink_records=NA
	if [[ -n $col ]]; then
		lost=$(metric tcpconnect_connects_lost)
		dnslost=$(metric tcpconnect_dns_packets_lost)
		recv1=$(metric tcpconnect_connects_received)
		if [[ $setup == sink ]]; then
			sink_records=$(($(metric otelcol_exporter_sent_log_records) - sent0))
			recv1=$((recv0 + sink_read))
		fi
	fi
	local p
	for p in "$watch" "$col" "$gw" "$bt"; do
		if [[ -n $p ]]; then stop "$p"; fi
	done
	rate_b=$(kv rate "$storm_line")
	connects=$(kv connects "$storm_line")
	dnsq_b=$(kv qps "$dns_line")
	cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')
	if [[ $recv0 != NA && $recv1 != NA ]]; then
		events=$((recv1 - recv0))
	else
		events=NA
	fi
	if [[ $setup == debug || $setup == sink ]]; then
		ana="matched=NA records=NA"
	else
		local fmt=otlpjson
		if [[ $setup == bpftrace ]]; then fmt=bpftrace; fi
		ana=$("$bin/benchtool" analyze -format "$fmt" -file "$outf" -watch "$out/$tag.watch" \
			-samples "$out/$tag.samples" -pid "$(kv pid "$storm_line")" -port "$(kv port "$storm_line")")
		echo "$ana" >"$out/$tag.analysis"
		rm -f "$outf" # large; the analysis is kept
	fi
	if [[ $events == NA ]]; then events=$(kv records "$ana"); fi
}

results="$out/results.tsv"
printf 'load\tsetup\tpair\trate_a\trate_b\tconnects\tmatched\tkernel_lost\tevents\tcpu_s\thwm_mib\tfile_p50_ms\tfile_p99_ms\tobs_p50_ms\tobs_p99_ms\tdns_qps_a\tdns_qps_b\tdns_lost\tmatched_records\tstorm_s\tsink_records\tgw_cpu_s\twire_bytes\n' >"$results"

# fields: the TSV fields of the last run_b after rate_a.
fields() {
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' \
		"$rate_b" "$connects" "$(kv matched "$ana")" "$lost" "$events" \
		"$cpu" "$hwm" "$(kv file_ms_p50 "$ana")" "$(kv file_ms_p99 "$ana")" \
		"$(kv observed_ms_p50 "$ana")" "$(kv observed_ms_p99 "$ana")" @DNSQA@ "$dnsq_b" "$dnslost" \
		"$(kv matched_records "$ana")" "$(kv seconds "$storm_line")" "$sink_records" "$gw_cpu" "$wire"
}

# row LOAD SETUP PAIR FIELDS: one TSV row, with the last run_a's rates.
row() {
	printf '%s\t%s\t%d\t%s\t%s\n' "$1" "$2" "$3" "$rate_a" "${4/@DNSQA@/$dnsq_a}" | tee -a "$results" >&2
}

# one_pair LOAD SETUP P: pair P of SETUP (two rows with --ab).
one_pair() {
	local load=$1 setup=$2 p=$3 tag f_base f_new
	if [[ $load == dns && $setup != file && $setup != bpftrace ]]; then return; fi
	tag="$load-$setup-$p"
	echo "== $tag" >&2
	if [[ $ab == 1 && $setup != bpftrace ]]; then
		# The storm alone, the base collector, this one; reversed
		# every other pair. Both rows carry the pair's bare rate.
		if ((p % 2)); then
			run_a "$load" "$tag-A"
			run_b "$load" "$setup@base" "$tag-base"
			f_base=$(fields)
			run_b "$load" "$setup" "$tag-new"
			f_new=$(fields)
		else
			run_b "$load" "$setup" "$tag-new"
			f_new=$(fields)
			run_b "$load" "$setup@base" "$tag-base"
			f_base=$(fields)
			run_a "$load" "$tag-A"
		fi
		row "$load" "$setup@base" "$p" "$f_base"
		row "$load" "$setup" "$p" "$f_new"
		return
	fi
	if ((p % 2)); then
		run_a "$load" "$tag-A"
		run_b "$load" "$setup" "$tag-B"
	else
		run_b "$load" "$setup" "$tag-B"
		run_a "$load" "$tag-A"
	fi
	row "$load" "$setup" "$p" "$(fields)"
}

for load in ${loads//,/ }; do
	if [[ $interleave == 1 ]]; then
		for ((p = 1; p <= pairs; p++)); do
			for setup in ${setups//,/ }; do one_pair "$load" "$setup" "$p"; done
		done
	else
		for setup in ${setups//,/ }; do
			for ((p = 1; p <= pairs; p++)); do one_pair "$load" "$setup" "$p"; done
		done
	fi
done

cache_line="cache fill: skipped"
if [[ $cache_names -gt 0 && $needs_collector == 1 ]]; then
	echo "== cache fill: $cache_names names" >&2
	# One A record per answer: each name (question + CNAME) maps one new IP, so
	# the cache holds cache_names entries; max_entries is set above that.
	export BENCH_HEALTH_PORT=$health_port BENCH_METRICS_PORT=$metrics_port BENCH_DNS_MAX_ENTRIES=$((cache_names * 2))
	"$collector" --config "$here/configs/cache.yaml" >"$out/cache.log" 2>&1 &
	col=$!
	pids+=("$col")
	wait_health "$health_port" "$col"
	dl=$("$bin/dnsstorm" -listen 127.0.0.77:53 -workers 2 -answers 1 -count "$cache_names" -duration 120s)
	sleep 2
	pstat=$("$bin/benchtool" proc -pid "$col")
	cache_line="cache fill: $dl; collector $pstat; dns_cache_entries=$(metric tcpconnect_dns_cache_entries) dns_answers_parsed=$(metric tcpconnect_dns_answers_parsed) dns_packets_lost=$(metric tcpconnect_dns_packets_lost)"
	stop "$col"
fi
echo "$cache_line" | tee "$out/cache.txt" >&2

{
	echo "Run: $0 --pairs $pairs --threads $threads --seconds $seconds --setups $setups --loads $loads --dns-qps $dns_qps --cache-names $cache_names --sample-every $sample_every --unique $unique"
	echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
	if [[ -n $agg_note ]]; then echo "$agg_note"; fi
	echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
	echo
	"$bin/benchtool" table -in "$results"
	echo
	echo "$cache_line"
} | tee "$out/table.md"
echo "results in $out" >&2
