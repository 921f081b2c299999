// Package procinfo enriches a connect record with what /proc knows about the
// process: executable path, owner, command line, container and pod. Lookups
// are cached per process incarnation (pid and start time), so a busy process
// costs one /proc read, and a process that is already gone (curl exits before
// the reader sees its connect) still gets a container from its cgroup id.
//
// A Cache is not safe for concurrent use: the receiver calls it from its one
// reader goroutine.
package procinfo

import (
	"bytes"
	"container/list"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of Config. A container's process that is gone before its record
// is read (a short nc, curl or CronJob) is found by its cgroup id, which a
// walk of the cgroup tree maps to a path (see cgroupPath and the walks'
// bounds in cgroupid.go).
const (
	DefaultMaxEntries   = 4096
	DefaultTTL          = 5 * time.Minute
	DefaultCgroupRescan = 10 * time.Second
	maxUsers            = 1024
)

// Config configures a Cache.
type Config struct {
	// ProcRoot is the procfs mount; "" means /proc. It must show the host's
	// PID namespace (see CheckHostPIDView).
	ProcRoot string
	// NoProc leaves /proc out: Info then comes from the kernel record and
	// the cgroup id alone. For a ProcRoot that shows another PID namespace,
	// where /proc/PID would be another process.
	NoProc bool
	// CgroupRoot is the cgroup v2 mount, used to map a record's cgroup id to
	// a cgroup path when /proc no longer has the process. "" disables that.
	CgroupRoot string
	// MaxEntries bounds the processes cached; the least recently used goes.
	MaxEntries int
	// TTL bounds how long an entry is trusted before /proc is read again.
	TTL time.Duration
	// CgroupRescan is the least time between two walks of CgroupRoot on
	// misses of ids that the last walk would have found; an id of a cgroup
	// that may have been made since walks at once, within a budget of
	// walking time (cgroupid.go).
	CgroupRescan time.Duration
	// CommandLine reads /proc/PID/cmdline (opt-in: it may hold secrets).
	CommandLine bool
	// MaxCommandLineBytes caps Info.CommandLine; 0 means
	// DefaultMaxCommandLineBytes. No more than this (and a byte) is read.
	MaxCommandLineBytes int
}

// Key identifies one process incarnation: a pid and its start time as the
// kernel record carries it (task->group_leader->start_time, ns).
type Key struct {
	PID         uint32
	StartTimeNs uint64
}

// Info is what the cache knows about a process. An Info is never modified
// after a lookup returned it; callers must not modify it either.
//
// Every string of an Info is valid UTF-8 and within its cap (MaxExePathBytes,
// MaxExeNameBytes, MaxOwnerBytes, Config.MaxCommandLineBytes): whatever a
// process or /proc holds, see Clean.
type Info struct {
	// ExePath is the executable's path (readlink /proc/PID/exe), "" if gone.
	ExePath string
	// ExeName is the executable's base name: from ExePath, else from the
	// kernel record's exe, else its comm.
	ExeName string
	// Owner is the user name of the record's uid, "" when unknown.
	Owner string
	// CommandLine is the space-joined argv, only with Config.CommandLine.
	CommandLine string
	// Container is the container and pod parsed from the cgroup path.
	Container Container
	// Sanitized and Truncated count the strings above in which Clean
	// replaced invalid UTF-8, and which it cut to their cap.
	Sanitized, Truncated uint8

	kernelExe string // the record's exe basename this entry was built for
	// retry: the cgroup id may name a cgroup that a walk refused by its
	// budget would have found; the entry is kept cgroupRetry only.
	retry bool
}

type entry struct {
	key     Key
	info    *Info
	expires time.Time
}

// Cache maps process incarnations to Info. The zero value is not usable:
// call New.
type Cache struct {
	cfg     Config
	lru     *list.List // of *entry, most recent first
	entries map[Key]*list.Element
	// front is the entry the last Lookup returned, the LRU's front:
	// consecutive connects mostly come from one process, and a hit on it
	// skips the map (hashing a Key) and the LRU move.
	front *entry
	users map[uint32]string

	cgroups     map[uint64]string // cgroup id (inode) -> path below CgroupRoot
	cgroupsScan time.Time         // when the last walk began
	cgroupsSeen uint64            // every cgroup with an id up to this existed at the last walk (cgroupPath)
	walkDebt    time.Duration     // the walks' time not yet paid back (cgroupid.go)
	walkDebtAt  time.Time
	walks       int // walks of CgroupRoot done
}

// New returns an empty cache.
func New(cfg Config) *Cache {
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.CgroupRescan <= 0 {
		cfg.CgroupRescan = DefaultCgroupRescan
	}
	if cfg.MaxCommandLineBytes <= 0 {
		cfg.MaxCommandLineBytes = DefaultMaxCommandLineBytes
	}
	return &Cache{
		cfg:     cfg,
		lru:     list.New(),
		entries: make(map[Key]*list.Element),
		users:   make(map[uint32]string),
	}
}

// Lookup returns what is known about the process k. kernelExe and comm are the
// record's executable basename and command name; uid is the record's uid and
// cgroupID its cgroup v2 id. A cached entry is reused while it is fresh and
// was built for the same executable (an exec keeps pid and start time).
func (c *Cache) Lookup(k Key, kernelExe, comm []byte, uid uint32, cgroupID uint64, now time.Time) *Info {
	if e := c.front; e != nil && e.key == k && now.Before(e.expires) && e.info.kernelExe == string(kernelExe) {
		return e.info
	}
	if el, ok := c.entries[k]; ok {
		e := el.Value.(*entry)
		if now.Before(e.expires) && e.info.kernelExe == string(kernelExe) {
			c.lru.MoveToFront(el)
			c.front = e
			return e.info
		}
		c.lru.Remove(el)
		delete(c.entries, k)
	}
	info := c.load(k, kernelExe, comm, uid, cgroupID, now)
	e := &entry{key: k, info: info, expires: now.Add(c.cfg.TTL)}
	if info.retry {
		e.expires = now.Add(cgroupRetry)
	}
	c.entries[k] = c.lru.PushFront(e)
	c.front = e
	for c.lru.Len() > c.cfg.MaxEntries {
		last := c.lru.Back()
		delete(c.entries, last.Value.(*entry).key)
		c.lru.Remove(last)
	}
	return info
}

func (c *Cache) load(k Key, kernelExe, comm []byte, uid uint32, cgroupID uint64, now time.Time) *Info {
	info := &Info{kernelExe: string(kernelExe), Owner: c.userName(uid)}
	pidDir := filepath.Join(c.cfg.ProcRoot, strconv.FormatUint(uint64(k.PID), 10))
	var cmdline string
	cmdlineCut := false
	if !c.cfg.NoProc && c.sameProcess(pidDir, k.StartTimeNs) {
		if p, err := os.Readlink(filepath.Join(pidDir, "exe")); err == nil {
			info.ExePath = strings.TrimSuffix(p, " (deleted)")
		}
		if c.cfg.CommandLine {
			cmdline, cmdlineCut = readCommandLine(filepath.Join(pidDir, "cmdline"), c.cfg.MaxCommandLineBytes)
		}
		if f, err := os.Open(filepath.Join(pidDir, "cgroup")); err == nil {
			info.Container, _ = parseCgroupFile(f)
			f.Close()
		}
	}
	if info.Container == (Container{}) && cgroupID != 0 {
		p, ok, retry := c.cgroupPath(cgroupID, now)
		if ok {
			info.Container = parseCgroupPath(p)
		}
		info.retry = retry
	}
	switch {
	case info.ExePath != "":
		info.ExeName = filepath.Base(info.ExePath)
	case len(kernelExe) > 0:
		info.ExeName = string(kernelExe)
	default:
		info.ExeName = string(comm)
	}
	// A path that the kernel record contradicts (an exec raced the read) is
	// not this record's: keep the kernel's name.
	if len(kernelExe) > 0 && info.ExeName != string(kernelExe) && !strings.HasPrefix(info.ExeName, string(kernelExe)) {
		info.ExePath, info.ExeName = "", string(kernelExe)
	}
	// Any process chooses its comm, argv and executable's name, and none of
	// them need be UTF-8: clean them once here, off the per-connect path.
	info.ExePath = info.clean(info.ExePath, MaxExePathBytes, false)
	info.ExeName = info.clean(info.ExeName, MaxExeNameBytes, false)
	info.Owner = info.clean(info.Owner, MaxOwnerBytes, false)
	info.CommandLine = info.clean(cmdline, c.cfg.MaxCommandLineBytes, cmdlineCut)
	return info
}

// clean is Clean, counting what it changed in info.
func (info *Info) clean(s string, maxBytes int, cut bool) string {
	s, f := Clean(s, maxBytes, cut)
	if f&Sanitized != 0 {
		info.Sanitized++
	}
	if f&Truncated != 0 {
		info.Truncated++
	}
	return s
}

// readCommandLine reads a /proc/PID/cmdline file, at most maxBytes of it
// and a byte to tell whether there is more: the arguments joined by spaces,
// and whether the file was longer (then the result is a prefix). It returns
// "" when the file cannot be read.
func readCommandLine(path string, maxBytes int) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(maxBytes)+1))
	if err != nil {
		return "", false
	}
	cut := len(b) > maxBytes
	if cut {
		b = b[:maxBytes]
	}
	b = bytes.TrimRight(b, "\x00")
	for i, c := range b {
		if c == 0 {
			b[i] = ' '
		}
	}
	return string(bytes.TrimSpace(b)), cut
}

// sameProcess reports whether pidDir is the process that started at
// startNs. The kernel record carries task->start_time (CLOCK_MONOTONIC);
// /proc/PID/stat shows start_boottime (CLOCK_BOOTTIME) in clock ticks. They
// differ by the time the host was suspended before the process started, at
// most the suspended time up to now, plus a tick of rounding.
func (c *Cache) sameProcess(pidDir string, startNs uint64) bool {
	b, err := os.ReadFile(filepath.Join(pidDir, "stat"))
	if err != nil {
		return false
	}
	st, err := ParseStat(b)
	if err != nil {
		return false
	}
	if startNs == 0 {
		return true // a record without start time: trust the pid
	}
	const tick = int64(time.Second / ClockTicks)
	statNs := int64(st.StartTime) * tick
	slack := 2*tick + suspendedNs()
	d := statNs - int64(startNs)
	return d >= -2*tick && d <= slack
}

// suspendedNs is CLOCK_BOOTTIME - CLOCK_MONOTONIC: how long the host slept.
func suspendedNs() int64 {
	var boot, mono unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot) != nil || unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono) != nil {
		return 0
	}
	return max(boot.Nano()-mono.Nano(), 0)
}

// userName returns the name of uid, cached. os/user reads /etc/passwd when
// built without cgo, so CGO_ENABLED=0 works (without NSS sources).
func (c *Cache) userName(uid uint32) string {
	if n, ok := c.users[uid]; ok {
		return n
	}
	var name string
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = u.Username
	}
	if len(c.users) >= maxUsers {
		clear(c.users)
	}
	c.users[uid] = name
	return name
}
