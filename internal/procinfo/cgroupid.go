package procinfo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// The bounds of the walks of the cgroup tree. A walk reads every cgroup's
// directory: 4 to 5 ms of CPU for 500 cgroups and 23 to 25 ms for 2000
// (wall time 4 to 7 ms and 27 to 62 ms) on the shared 2-core build machine
// (BenchmarkScanCgroups; its cgroups have no controllers, a node's have more
// files to list), so it is done on a miss only, and bounded:
//   - an id that may be a cgroup made since the last walk (see cgroupPath)
//     walks at once, while the walks' wall time not yet paid back
//     (walkDebt) is below maxWalkDebt; it is paid back at 1/walkShare of
//     the time that passes: in the long run these walks take at most
//     1/walkShare of the reader's time, however many new cgroups come, and
//     a burst of new pods (each walk finds every cgroup made before it)
//     walks at once;
//   - any other miss waits for Config.CgroupRescan since the last walk.
//
// A new id refused by the budget is looked for again by the process's next
// record at least cgroupRetry later (its Info is cached only that long).
const (
	maxWalkDebt = 500 * time.Millisecond
	walkShare   = 20
	cgroupRetry = 100 * time.Millisecond
)

// cgroupPath maps a cgroup v2 id to its path below the mount, and tells
// whether a later lookup of an id it did not find may find it (retry).
//
// A cgroup's id is its directory's inode number in cgroupfs (the kernfs node
// id), and the kernel hands them out in increasing order. A record's id
// names a cgroup that existed when the record was made, before the walk it
// causes: so every cgroup whose id is at most that id existed when the walk
// began, and was found unless it was removed. cgroupsSeen is the largest
// such id: an unknown id above it may name a cgroup made since (a new
// container whose process is gone before its record is read, and whose
// cgroup may be gone too by the next regular walk), and is walked for at
// once within the walk budget; an unknown id at or below it waits for
// CgroupRescan.
func (c *Cache) cgroupPath(id uint64, now time.Time) (path string, ok, retry bool) {
	if c.cfg.CgroupRoot == "" {
		return "", false, false
	}
	if p, ok := c.cgroups[id]; ok {
		return p, true, false
	}
	newer := id > c.cgroupsSeen
	c.payWalkDebt(now)
	if !c.cgroupsScan.IsZero() && now.Sub(c.cgroupsScan) < c.cfg.CgroupRescan {
		if !newer {
			return "", false, false
		}
		if c.walkDebt >= maxWalkDebt {
			return "", false, true
		}
	}
	c.cgroupsScan = now
	start := time.Now()
	m, err := scanCgroups(c.cfg.CgroupRoot)
	c.walkDebt += time.Since(start)
	c.walks++
	if err != nil {
		return "", false, newer
	}
	c.cgroups = m
	c.cgroupsSeen = max(c.cgroupsSeen, id)
	p, ok := m[id]
	return p, ok, false
}

// payWalkDebt takes off the walk debt what the time since the last call
// pays back.
func (c *Cache) payWalkDebt(now time.Time) {
	if now.After(c.walkDebtAt) {
		c.walkDebt = max(0, c.walkDebt-now.Sub(c.walkDebtAt)/walkShare)
		c.walkDebtAt = now
	}
}

// scanCgroups walks a cgroup v2 mount and maps each cgroup's id (its
// directory's inode number) to its path relative to root, "/"-prefixed as in
// /proc/PID/cgroup. It reads each directory once with getdents, whose
// entries carry the inode number and type: no stat per cgroup and no
// allocation per file. A cgroup removed during the walk is left out.
func scanCgroups(root string) (map[uint64]string, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("scan cgroups under %s: %w", root, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("scan cgroups under %s: %w", root, err)
	}
	w := cgroupWalk{m: map[uint64]string{st.Ino: "/"}, buf: make([]byte, 32<<10)}
	if err := w.dir(fd, ""); err != nil {
		return nil, fmt.Errorf("scan cgroups under %s: %w", root, err)
	}
	return w.m, nil
}

// cgroupWalk is one walk of scanCgroups.
type cgroupWalk struct {
	m   map[uint64]string
	buf []byte // getdents' buffer, shared: a directory is read whole before its children
}

// subdir is a directory entry that is a directory.
type subdir struct {
	name string
	ino  uint64
}

// dir adds the directories below fd, whose path is rel ("" for the root).
func (w *cgroupWalk) dir(fd int, rel string) error {
	var subs []subdir
	for {
		n, err := unix.Getdents(fd, w.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read directory %q: %w", rel+"/", err)
		}
		if n <= 0 {
			break
		}
		subs = appendSubdirs(subs, fd, w.buf[:n])
	}
	for _, s := range subs {
		p := rel + "/" + s.name
		w.m[s.ino] = p
		cfd, err := unix.Openat(fd, s.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue // removed since, or not ours to read
		}
		_ = w.dir(cfd, p) // an error: a cgroup removed while it was read
		unix.Close(cfd)
	}
	return nil
}

// appendSubdirs appends the directories among the linux_dirent64 records of
// b (read from directory fd) to subs.
func appendSubdirs(subs []subdir, fd int, b []byte) []subdir {
	// struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
	const nameOff = 19
	for len(b) >= nameOff {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < nameOff || reclen > len(b) {
			break
		}
		rec := b[:reclen]
		b = b[reclen:]
		name := rec[nameOff:]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if len(name) == 0 || string(name) == "." || string(name) == ".." {
			continue
		}
		ino, typ := binary.NativeEndian.Uint64(rec[0:8]), rec[18]
		if typ == unix.DT_UNKNOWN {
			// A file system without types in its entries (cgroupfs has
			// them): ask.
			var st unix.Stat_t
			if unix.Fstatat(fd, string(name), &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
				continue
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				typ, ino = unix.DT_DIR, st.Ino
			}
		}
		if typ == unix.DT_DIR {
			subs = append(subs, subdir{name: string(name), ino: ino})
		}
	}
	return subs
}
