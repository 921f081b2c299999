#!/usr/bin/env bash
# bench/profile.sh: where the collector's CPU goes on the connect storm.
#
#   bench/profile.sh [--config sink|agent|file] [--connects N] [--warmup N] [--freq HZ] [--out DIR]
#
# Builds a symbolised collector from _build (the ocb binary is stripped; this
# is the same module linked without -s -w; run `make build` first), runs it
# with the config (sink: bench/configs/sink.yaml, tcpconnect -> batch -> a
# debug exporter that only counts; agent: deploy/kubernetes/agent.yaml's
# collector config exporting OTLP to a second collector, as bench/run.sh's
# agent setup; file: bench/configs/file.yaml), samples it with
# `perf record -e cpu-clock -g` while bench/storm makes N connects on one
# thread (default 60,000), and prints every sample's stack sorted into one
# stage, walking from the leaf to the root and taking the first stage whose
# function is on it:
#
#   GC                 runtime.gcBgMarkWorker, runtime.gcAssistAlloc (the
#                      allocating goroutine's assist), the sweeper
#   exporter           the exporter's push (OTLP/gRPC marshal, gzip, JSON)
#   batch              the batch processor
#   record             building the plog record (receiver batcher.add and
#                      fillRecord/fillResource/take, pdata)
#   process lookup     receiver procinfo cache
#   outcome join       receiver waitOutcome/handleOutcome/outcomeWait/waitIndex
#   decode             internal/event decoders
#   ring read          cilium/ebpf ringbuf (epoll, the ring's reads)
#   clock              time.Now/time.Since in the reader
#   telemetry          the collector's own metrics (otel SDK, Prometheus)
#   reader             the reader loop's own code
#   runtime: ...       the scavenger returning memory (madvise), sysmon,
#                      the scheduler
#   other              all the rest
#
# plus, across stages, the share of samples with runtime.mallocgc on the
# stack (allocation), and the top functions by self and by inclusive time.
# Needs root, perf (software clock: this machine has no hardware counters),
# gcc, go. All traffic is on loopback.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
config=sink connects=60000 freq=4999 analyze="" warmup=0
out="/tmp/tcpconnect-bench/profile-$(date +%Y%m%d-%H%M%S)"
while [[ $# -gt 0 ]]; do
	case "$1" in
	--config) config=$2; shift 2 ;;
	--connects) connects=$2; shift 2 ;;
	--freq) freq=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--analyze) analyze=$2; shift 2 ;;
	--warmup) warmup=$2; shift 2 ;;
	*) echo "usage: $0 [--config sink|agent|file] [--connects N] [--freq HZ] [--out DIR] | --analyze DIR" >&2; exit 2 ;;
	esac
done
# awk_analysis DIR: the stage table and top functions of DIR/stacks.txt.
awk_analysis() {
	local out=$1
	awk -v out="$out" '
function stage(f) {
	if (f ~ /runtime\.gcBgMarkWorker|runtime\.gcAssistAlloc|runtime\.bgsweep|runtime\.sweepone|runtime\.gcMarkDone|runtime\.gcStart/) return "GC"
	if (f ~ /exporter/) return "exporter"
	if (f ~ /batchprocessor/) return "batch"
	if (f ~ /receiver\.\(\*batcher\)|receiver\.\(\*reader\)\.(emit|flush)|receiver\.putStr|receiver\.putInt/) return "record"
	if (f ~ /procinfo/) return "process lookup"
	if (f ~ /waitOutcome|handleOutcome|outcomeWait|waitIndex|expireWaiting|receiver\.resultOf/) return "outcome join"
	if (f ~ /internal\/event\.Decode/) return "decode"
	if (f ~ /ringbuf|epoll/) return "ring read"
	if (f ~ /receiver\.\(\*reader\)\.readTime|^time\.Now|^time\.Since/) return "clock"
	if (f ~ /go\.opentelemetry\.io\/otel\/sdk|prometheus/) return "telemetry"
	if (f ~ /receiver\.\(\*reader\)/) return "reader"
	if (f ~ /runtime\.bgscavenge|runtime\.\(\*scavengerState\)/) return "runtime: scavenger (madvise)"
	if (f ~ /runtime\.sysmon/) return "runtime: sysmon"
	if (f ~ /runtime\.schedule$|runtime\.findRunnable|runtime\.park_m|runtime\.stopm|runtime\.notesleep/) return "runtime: scheduler"
	return ""
}
function flush(   i, s, seen, f, k, alloc) {
	if (n == 0) return
	total++
	s = ""
	# GC first: an assist inside an allocation is GC work.
	for (i = 1; i <= n; i++) if (fr[i] ~ /runtime\.gcAssistAlloc|runtime\.gcBgMarkWorker/) { s = "GC"; break }
	for (i = 1; i <= n && s == ""; i++) s = stage(fr[i])
	if (s == "") s = "other"
	st[s]++
	alloc = 0
	for (i = 1; i <= n; i++) {
		f = fr[i]
		if (f ~ /^runtime\.mallocgc$/) alloc = 1
		if (!(f in seen)) { seen[f] = 1; incl[f]++ }
	}
	if (alloc) { allocs++; allocst[s]++ }
	self[fr[1]]++
	n = 0
}
/^$/ { flush(); next }
{
	f = $2
	if (f == "" || f == "[unknown]") f = "[unknown]"
	sub(/\+0x[0-9a-f]+$/, "", f)
	fr[++n] = f
}
END {
	flush()
	printf "samples=%d\n\n| stage | share of collector CPU | of which in runtime.mallocgc |\n|---|---|---|\n", total
	for (s in st) printf "| %s | %.1f%% | %.1f%% |\n", s, 100 * st[s] / total, 100 * allocst[s] / total | "sort -t\"|\" -k3 -rn"
	close("sort -t\"|\" -k3 -rn")
	printf "\nruntime.mallocgc on the stack: %.1f%% of samples\n", 100 * allocs / total
	printf "\ntop functions, self:\n"
	for (f in self) printf "%6.2f%% %s\n", 100 * self[f] / total, f | "sort -rn | head -30"
	close("sort -rn | head -30")
	printf "\ntop functions, inclusive:\n"
	for (f in incl) printf "%6.2f%% %s\n", 100 * incl[f] / total, f | "sort -rn | head -60"
	close("sort -rn | head -60")
}' "$out/stacks.txt"
}
if [[ -n $analyze ]]; then
	awk_analysis "$analyze"
	exit 0
fi
[[ $(id -u) == 0 ]] || { echo "profile.sh loads eBPF programs: run as root" >&2; exit 1; }
[[ -f $root/_build/main.go ]] || { echo "no _build sources: make build first" >&2; exit 1; }
mkdir -p "$out"
echo "== building the symbolised collector and the storm into $out" >&2
(cd "$root/_build" && CGO_ENABLED=0 go build -trimpath -o "$out/otelcol-prof" .)
gcc -O2 -Wall -pthread -o "$out/storm" "$here/storm.c"

export BENCH_DNS=false BENCH_HEALTH_PORT=23133 BENCH_METRICS_PORT=28888 BENCH_OTLP_PORT=24317 BENCH_OUT=/dev/null
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done' EXIT
env_cmd=()
case $config in
sink | file) cfg=$here/configs/$config.yaml ;;
agent)
	# As bench/run.sh's agent setup: the ConfigMap's config, addresses on
	# loopback, and the container's GOGC/GOMEMLIMIT.
	cfg=$out/agent.yaml
	awk '/^  config.yaml: \|$/ { on = 1; next } on && /^---/ { exit } on { sub(/^    /, ""); print }' "$root/deploy/kubernetes/agent.yaml" |
		sed -e 's/0\.0\.0\.0:13133/127.0.0.1:${env:BENCH_HEALTH_PORT}/' \
			-e 's/host: 0\.0\.0\.0/host: 127.0.0.1/' -e 's/port: 8888/port: ${env:BENCH_METRICS_PORT}/' \
			-e 's/endpoint: tcpconnect-gateway[^ ]*/endpoint: 127.0.0.1:${env:BENCH_OTLP_PORT}/' >"$cfg"
	for k in GOGC GOMEMLIMIT; do
		v=$(awk -v k="$k" '$0 ~ "- name: " k "$" { getline; if ($1 == "value:") { gsub(/"/, "", $2); print $2 } }' "$root/deploy/kubernetes/agent.yaml")
		if [[ -n $v ]]; then env_cmd+=("$k=$v"); fi
	done
	BENCH_HEALTH_PORT=23134 BENCH_METRICS_PORT=0 "$out/otelcol-prof" --config "$here/configs/otlp-gateway.yaml" >"$out/gateway.log" 2>&1 &
	pids+=($!)
	sleep 3
	;;
*) echo "unknown config $config" >&2; exit 2 ;;
esac
env "${env_cmd[@]}" "$out/otelcol-prof" --config "$cfg" >"$out/collector.log" 2>&1 &
col=$!
pids+=("$col")
for ((i = 0; i < 300; i++)); do
	curl -fsS "http://127.0.0.1:$BENCH_HEALTH_PORT/" >/dev/null 2>&1 && break
	sleep 0.1
done
sleep 1
if [[ $warmup -gt 0 ]]; then
	# A storm before the profiled one: the heap has grown to its goal and
	# the collector runs in its steady state (with a high GOGC the first
	# storm is mostly page faults on fresh heap).
	"$out/storm" -t 1 -n "$warmup" -d 120 >"$out/warmup.txt"
	sleep 3
fi
perf record -e cpu-clock -F "$freq" -g -p "$col" -o "$out/perf.data" 2>"$out/perf.log" &
perf_pid=$!
sleep 1
"$out/storm" -t 1 -n "$connects" -d 120 | tee "$out/storm.txt" >&2
# Until the batch processor and the exporter are done with the last records.
sleep 3
kill -INT "$perf_pid"
wait "$perf_pid" || true
cpu=$(awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$col/stat")
echo "collector cpu_seconds_total=$cpu (since start)" | tee "$out/cpu.txt" >&2

perf script -i "$out/perf.data" -F ip,sym 2>/dev/null >"$out/stacks.txt"
awk_analysis "$out" | tee "$out/profile.txt"
echo "== $out/profile.txt (perf data: $out/perf.data)" >&2
