#!/usr/bin/env bash
# bench/vm.sh: the connect-storm A/B benchmark inside the vmtest VMs (qemu TCG,
# Debian kernels pinned in internal/vmtest), receiver in lsm attach mode.
#
#   bench/vm.sh --pairs 5 --seconds 4
#
# It builds bench/storm statically, bench/vmbench (the guest-side driver,
# CGO_ENABLED=0) and cmd/vmtest, copies the collector (_build/otelcol-tcpconnect,
# `make build`; it is copied so that a rebuild during the run changes nothing),
# and boots each kernel once with one command: vmbench, which alternates A
# (storm alone) and B (storm with the collector: tcpconnect attach lsm -> file
# exporter, bench/configs/vm.yaml) and prints per-pair lines and a summary.
# The guest has busybox but no bash: every guest step is in vmbench.
#
# Under TCG absolute rates mean nothing; only the B/A ratios, the loss and the
# CPU ratios count. Needs root (the vmtest runner; eBPF in the guest), gcc with
# a static libc (libc6-dev), go, qemu-system-x86 and busybox-static (make deps).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

pairs=5
seconds=4
threads=2
# The amd64 kernels with bpf in their default LSM list (attach=lsm works there).
kernels=6.1,6.12
attach=lsm
timeout=8m
collector="$root/_build/otelcol-tcpconnect"
out="/tmp/tcpconnect-bench/vm-$(date +%Y%m%d-%H%M%S)"

usage() {
	cat <<EOF
usage: $0 [--pairs N] [--seconds S] [--threads T] [--kernels LIST] [--attach MODE]
          [--timeout DUR] [--collector PATH] [--out DIR]
  --kernels  vmtest kernel names, comma-separated, or all (default $kernels)
  --attach   receiver attach mode in the guest (default $attach)
  --timeout  bound on each kernel's boot (default $timeout)
EOF
	exit 2
}

while [[ $# -gt 0 ]]; do
	case "$1" in
	--pairs) pairs=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--kernels) kernels=$2; shift 2 ;;
	--attach) attach=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--collector) collector=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	*) usage ;;
	esac
done
[[ $pairs =~ ^[0-9]+$ && $pairs -ge 1 && $pairs -le 50 ]] || usage
[[ $seconds =~ ^[0-9]+$ && $seconds -ge 1 && $seconds -le 120 ]] || usage
[[ $threads =~ ^[0-9]+$ && $threads -ge 1 && $threads -le 64 ]] || usage
[[ $attach =~ ^(lsm|fentry|kprobe|cgroup|auto)$ ]] || usage
[[ $(id -u) == 0 ]] || { echo "vm.sh boots qemu and loads eBPF in the guest: run as root" >&2; exit 1; }
[[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || { echo "no static libc: apt-get install libc6-dev" >&2; exit 1; }
[[ -x $collector ]] || { echo "collector $collector not built (make build)" >&2; exit 1; }

bin="$out/bin"
mkdir -p "$bin"
echo "== building into $bin" >&2
gcc -O2 -Wall -static -pthread -o "$bin/storm" "$here/storm.c"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$bin/vmbench" ./bench/vmbench && go build -o "$bin/vmtest" ./cmd/vmtest)
cp "$collector" "$bin/otelcol-tcpconnect"

log="$out/vmtest.log"
echo "== booting $kernels (log: $log)" >&2
rc=0
# cmd/vmtest finds the module root from the working directory.
(cd "$root" && "$bin/vmtest" -kernels "$kernels" -timeout "$timeout" \
	-file "$bin/storm:/bench/storm" \
	-file "$bin/vmbench:/bench/vmbench" \
	-file "$here/configs/vm.yaml:/bench/vm.yaml" \
	-file "$bin/otelcol-tcpconnect:/bin/otelcol-tcpconnect" \
	-run "vmbench=/bench/vmbench -attach $attach -pairs $pairs -seconds $seconds -threads $threads") 2>&1 |
	tee "$log" || rc=$?

# The guest's vmbench lines, and the summary rows as a markdown table.
grep -E '^\[[^] ]+\] vmbench: ' "$log" >"$out/vmbench.txt" || true
{
	echo "Run: $0 --pairs $pairs --seconds $seconds --threads $threads --kernels $kernels --attach $attach ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "| kernel | attach | pairs | connects/s A (median) | connects/s B (median) | B/A per pair | B/A median (min-max) | connects made (B) | records delivered | lost | kernel lost counter | collector CPU s per M events (net of idle), median | idle collector CPU | CPU budget s per M connects (vCPUs x A time / A connects), median | B/A predicted by CPU |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	sed -n 's/^\[[^] ]*\] vmbench: row //p' "$out/vmbench.txt"
} | tee "$out/table.md"
echo "results in $out" >&2
exit "$rc"
