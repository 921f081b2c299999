#!/usr/bin/env bash
# bench/cgchurn.sh: cgroup churn to run beside a benchmark, as on a node whose
# pods come and go: STATIC cgroups that stay (a node's pods), and every PERIOD
# seconds a new cgroup whose short process makes one refused connect to
# 127.0.0.1:1 and exits before the collector reads its record, so the
# collector finds its container by the cgroup id (a walk of the tree; see
# internal/procinfo/cgroupid.go). The new cgroup is removed at once. Stops
# and removes everything on TERM or INT.
#
#   STATIC=1000 PERIOD=0.05 bench/cgchurn.sh &
#   bench/ab.sh BASE --pairs 3 --setups sink; kill %1
#
# Needs root and cgroup v2 (CGROUP2, default the first cgroup2 mount).
set -u
mnt=${CGROUP2:-$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)}
[[ -n $mnt ]] || { echo "$0: no cgroup2 mount" >&2; exit 2; }
root=$mnt/tcpconnect-cgchurn
static=${STATIC:-1000} period=${PERIOD:-0.05}
cleanup() {
	rmdir "$root"/new-* 2>/dev/null
	for d in "$root"/static/pod*; do rmdir "$d"; done
	rmdir "$root/static" "$root"
	exit 0
}
trap cleanup TERM INT
mkdir -p "$root/static"
for ((i = 1; i <= static; i++)); do mkdir -p "$root/static/pod$i"; done
i=0
while :; do
	i=$((i + 1))
	d=$root/new-$i
	mkdir "$d"
	(echo $BASHPID >"$d/cgroup.procs" && exec 3<>/dev/tcp/127.0.0.1/1) 2>/dev/null
	rmdir "$d" 2>/dev/null
	sleep "$period"
done
