#!/usr/bin/env bash
# deb-test.sh DEB: installs the otelcol-tcpconnect .deb into a fresh Debian
# bookworm root file system booted with systemd as init (systemd-nspawn
# --boot) and checks, inside it:
#   - dpkg -i: the unit is enabled and active, as the system user
#     otelcol-tcpconnect with exactly the unit's capabilities;
#   - the agent records a connect made inside (loopback listener, busybox nc
#     client) in the default config's file exporter output;
#   - systemd-analyze security's score of the unit (printed; must stay below
#     DEB_MAX_EXPOSURE);
#   - systemctl reload picks up a changed config; a reload with a bad config
#     is refused and the collector keeps running; a restart with a bad config
#     fails, with the collector's error in the journal;
#   - dpkg --purge leaves /etc, /usr and /var/lib as they were before the
#     install (user, group, config, unit, enablement link, state directory).
# The root file system is debootstrapped once per machine into
# TCPCONNECT_DEBOOTSTRAP_CACHE (default /var/cache/tcpconnect-debootstrap)
# and used read-only below an overlay, so each run starts from a fresh one.
# Needs root, debootstrap and systemd-container (make deb-test installs them).
set -euo pipefail

DEB=$(realpath "$1")
CACHE=${TCPCONNECT_DEBOOTSTRAP_CACHE:-/var/cache/tcpconnect-debootstrap}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
MAX_EXPOSURE=${DEB_MAX_EXPOSURE:-3.0}
ROOTFS=$CACHE/bookworm
MACHINE=tcpconnect-debtest-$$
PORT=47613

log() { printf 'deb-test: %s\n' "$*"; }
fail() {
	printf 'deb-test: FAIL: %s\n' "$*" >&2
	if [ -n "${LEADER:-}" ]; then
		in_ct journalctl -u otelcol-tcpconnect --no-pager -n 40 >&2 || true
	fi
	exit 1
}

start=$SECONDS
if [ ! -e "$ROOTFS/.tcpconnect-complete" ]; then
	log "debootstrap bookworm into $ROOTFS (once per machine)"
	rm -rf "$ROOTFS.tmp"
	mkdir -p "$CACHE"
	debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,busybox \
		bookworm "$ROOTFS.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
		{ tail -20 "$CACHE/debootstrap.log"; fail "debootstrap failed (log: $CACHE/debootstrap.log)"; }
	rm -rf "$ROOTFS.tmp/var/cache/apt/archives/"*.deb
	touch "$ROOTFS.tmp/.tcpconnect-complete"
	rm -rf "$ROOTFS" && mv "$ROOTFS.tmp" "$ROOTFS"
	log "root file system made in $((SECONDS - start)) s"
fi

WORK=$(mktemp -d /tmp/tcpconnect-debtest.XXXXXX)
NSPAWN_PID=
LEADER=
cleanup() {
	if [ -n "$LEADER" ]; then
		kill -RTMIN+4 "$LEADER" 2>/dev/null || true # systemd: poweroff
		for _ in $(seq 50); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
	fi
	[ -n "$NSPAWN_PID" ] && kill "$NSPAWN_PID" 2>/dev/null && wait "$NSPAWN_PID" 2>/dev/null || true
	umount "$WORK/root" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/upper" "$WORK/ovl" "$WORK/root"
mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$WORK/upper,workdir=$WORK/ovl" "$WORK/root"
cp "$DEB" "$WORK/root/root/otelcol-tcpconnect.deb"

# The service's capabilities must be in the container's bounding set, and
# nspawn's own seccomp filter lets bpf() and perf_event_open() through only
# when told to. The container's own cgroup2 mount shows only its subtree of
# the host's hierarchy, which the receiver refuses for the cgroup programs
# (connects outside it would be missed): the host's cgroup2 root is bound
# read-only into it, where the receiver finds it by itself. --register=no
# and --keep-unit: the host need not run systemd (nspawn then asks no
# machined or systemd over D-Bus for a scope).
host_cgroup2=/sys/fs/cgroup
[ -e $host_cgroup2/cgroup.controllers ] || host_cgroup2=/sys/fs/cgroup/unified
[ -e $host_cgroup2/cgroup.controllers ] || fail "no cgroup v2 hierarchy on this host"
log "booting $ROOTFS with systemd-nspawn --boot"
systemd-nspawn --boot --quiet --register=no --keep-unit --machine="$MACHINE" \
	--directory="$WORK/root" --bind-ro="$host_cgroup2:/mnt/host-cgroup2" \
	--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN,CAP_SYS_PTRACE \
	--system-call-filter='bpf perf_event_open' \
	--console=passive >"$WORK/console.log" 2>&1 &
NSPAWN_PID=$!

# The container's systemd is nspawn's child (PID 1 in its own namespace).
for _ in $(seq 100); do
	LEADER=$(pgrep -P "$NSPAWN_PID" -x systemd || true)
	[ -n "$LEADER" ] && break
	kill -0 "$NSPAWN_PID" 2>/dev/null || { cat "$WORK/console.log"; fail "systemd-nspawn exited"; }
	sleep 0.2
done
[ -n "$LEADER" ] || { cat "$WORK/console.log"; fail "no systemd in the container"; }

# in_ct runs a command inside the booted container.
in_ct() { nsenter --target "$LEADER" --mount --uts --ipc --net --pid --cgroup -- "$@"; }

for _ in $(seq 150); do
	state=$(in_ct systemctl is-system-running 2>/dev/null || true)
	case $state in running | degraded) break ;; esac
	sleep 0.2
done
case $state in running | degraded) ;; *) fail "systemd in the container did not finish booting: ${state:-no answer}" ;; esac
log "booted ($state) in $((SECONDS - start)) s"
in_ct test -e /sys/fs/cgroup/unified/cgroup.controllers -o -e /sys/fs/cgroup/cgroup.controllers ||
	fail "no cgroup v2 mount in the container"

snapshot() { in_ct find /etc /usr /var/lib -xdev \( -path /var/lib/systemd -o -path /var/lib/dpkg \) -prune -o -print | sort; }
snapshot >"$WORK/before"

log "dpkg -i"
in_ct dpkg -i /root/otelcol-tcpconnect.deb >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg -i failed"; }
in_ct systemctl is-enabled --quiet otelcol-tcpconnect || fail "the unit is not enabled"

# wait_ready waits for the collector's "Everything is ready" after the
# journal cursor file $1 was written.
wait_ready() {
	for _ in $(seq 100); do
		in_ct journalctl -u otelcol-tcpconnect --no-pager --after-cursor="$(cat "$1")" 2>/dev/null |
			grep -q 'Everything is ready' && return 0
		sleep 0.2
	done
	return 1
}
cursor() { in_ct journalctl --show-cursor -n 0 --no-pager | sed -n 's/^-- cursor: //p' >"$1"; }
for _ in $(seq 100); do
	in_ct journalctl -u otelcol-tcpconnect --no-pager | grep -q 'Everything is ready' && break
	sleep 0.2
done
in_ct systemctl is-active --quiet otelcol-tcpconnect || fail "the service is not active after dpkg -i"
in_ct journalctl -u otelcol-tcpconnect --no-pager | grep -q 'Everything is ready' || fail "the collector never got ready"
mode=$(in_ct journalctl -u otelcol-tcpconnect --no-pager | grep 'eBPF programs loaded and attached' | grep -o '"mode": "[a-z]*"' | tail -1)
log "service active (attach $mode)"

# The process: the service user, exactly the unit's capabilities.
pid=$(in_ct systemctl show -p MainPID --value otelcol-tcpconnect)
user=$(in_ct stat -c %U "/proc/$pid")
[ "$user" = otelcol-tcpconnect ] || fail "the collector runs as $user, want otelcol-tcpconnect"
# CAP_NET_ADMIN 12, CAP_SYS_PTRACE 19, CAP_PERFMON 38, CAP_BPF 39.
want_caps=$(printf '%016x' $(((1 << 12) | (1 << 19) | (1 << 38) | (1 << 39))))
for set in CapEff CapBnd; do
	got=$(in_ct awk -v s="$set:" '$1 == s {print $2}' "/proc/$pid/status")
	[ "$got" = "$want_caps" ] || fail "$set $got, want $want_caps (BPF, PERFMON, NET_ADMIN, SYS_PTRACE)"
done
log "runs as otelcol-tcpconnect with CapEff=CapBnd=$want_caps"

# A connect inside: a loopback listener and a client, found in the records.
records=/var/lib/otelcol-tcpconnect/connects.jsonl
find_connect() { # $1: file, $2: port
	for _ in $(seq 50); do
		in_ct sh -c "grep -s '\"intValue\":\"$2\"' $1" | grep -q busybox && return 0
		sleep 0.2
	done
	return 1
}
connect() { # $1: port
	in_ct sh -c "busybox nc -l -p $1 >/dev/null & l=\$!; sleep 0.3; echo hi | busybox nc 127.0.0.1 $1; sleep 0.2; kill \$l 2>/dev/null; true"
}
connect $PORT
find_connect $records $PORT || fail "no record of the connect to 127.0.0.1:$PORT in $records"
log "recorded the connect to 127.0.0.1:$PORT"

# The security score.
in_ct systemd-analyze security otelcol-tcpconnect.service --no-pager >"$WORK/security.txt" 2>&1 || true
score=$(sed -n 's/.*Overall exposure level for otelcol-tcpconnect.service: \([0-9.]*\).*/\1/p' "$WORK/security.txt")
[ -n "$score" ] || { cat "$WORK/security.txt"; fail "systemd-analyze security gave no score"; }
log "systemd-analyze security: exposure $score (max $MAX_EXPOSURE)"
grep -E '^✗' "$WORK/security.txt" | sed 's/^/deb-test:   /' || true
awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN {exit !(s <= m)}' || fail "exposure $score above $MAX_EXPOSURE"

# Reload: a changed config (a second file) is picked up without a restart.
cfg=/etc/otelcol-tcpconnect/config.yaml
in_ct cp $cfg /root/config.yaml.orig
in_ct sed -i 's#connects.jsonl#reloaded.jsonl#' $cfg
cursor "$WORK/c1"
in_ct systemctl reload otelcol-tcpconnect || fail "systemctl reload failed"
wait_ready "$WORK/c1" || fail "no 'Everything is ready' after the reload"
[ "$(in_ct systemctl show -p MainPID --value otelcol-tcpconnect)" = "$pid" ] || fail "reload restarted the process"
connect $((PORT + 1))
find_connect /var/lib/otelcol-tcpconnect/reloaded.jsonl $((PORT + 1)) || fail "the reloaded config's file has no record of the connect"
log "systemctl reload: same process, the new config's exporter recorded the next connect"

# A bad config: reload refuses it and keeps the collector; restart fails
# with the collector's error in the journal.
in_ct sed -i 's#attach: auto#attach: sideways#' $cfg
if in_ct systemctl reload otelcol-tcpconnect 2>/dev/null; then fail "reload accepted a bad config"; fi
in_ct systemctl is-active --quiet otelcol-tcpconnect || fail "a refused reload stopped the collector"
[ "$(in_ct systemctl show -p MainPID --value otelcol-tcpconnect)" = "$pid" ] || fail "a refused reload replaced the process"
cursor "$WORK/c2"
if in_ct systemctl restart otelcol-tcpconnect 2>/dev/null; then fail "restart with a bad config succeeded"; fi
in_ct systemctl is-active --quiet otelcol-tcpconnect && fail "active with a bad config"
err=$(in_ct journalctl -u otelcol-tcpconnect --no-pager --after-cursor="$(cat "$WORK/c2")" | grep -m1 'sideways' || true)
[ -n "$err" ] || fail "the journal does not show the collector's error about the bad config"
log "bad config: reload refused (collector kept), restart failed; journal: ${err#*]: }"
in_ct cp /root/config.yaml.orig $cfg
in_ct systemctl reset-failed otelcol-tcpconnect
in_ct systemctl start otelcol-tcpconnect || fail "start after restoring the config failed"

log "dpkg --purge"
in_ct dpkg --purge otelcol-tcpconnect >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log"; fail "dpkg --purge failed"; }
in_ct getent passwd otelcol-tcpconnect >/dev/null && fail "purge left the user"
in_ct getent group otelcol-tcpconnect >/dev/null && fail "purge left the group"
in_ct systemctl cat otelcol-tcpconnect >/dev/null 2>&1 && fail "purge left the unit"
snapshot >"$WORK/after"
if ! diff "$WORK/before" "$WORK/after" >"$WORK/diff"; then
	cat "$WORK/diff"
	fail "purge left the file system different from before the install"
fi
log "purge: user, group, unit and every file gone (/etc, /usr, /var/lib as before)"
log "PASS in $((SECONDS - start)) s"
