package procinfo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupPath maps a cgroup v2 id to its path below the mount. A cgroup's id
// is its directory's inode number in cgroupfs, and the kernel hands them out
// in increasing order. The tree is walked on a miss, at most once per
// CgroupRescan; an id above every id of the last walk is a cgroup made
// since (a new container), and is looked for at once, at most once per
// minCgroupRescan: its process may be gone, and its cgroup with it, by the
// next regular walk.
func (c *Cache) cgroupPath(id uint64, now time.Time) (string, bool) {
	if c.cfg.CgroupRoot == "" {
		return "", false
	}
	if p, ok := c.cgroups[id]; ok {
		return p, true
	}
	if !c.cgroupsScan.IsZero() {
		since := now.Sub(c.cgroupsScan)
		newer := id > c.cgroupsMax && since >= minCgroupRescan
		if since < c.cfg.CgroupRescan && !newer {
			return "", false
		}
	}
	c.cgroupsScan = now
	m, err := scanCgroups(c.cfg.CgroupRoot)
	if err != nil {
		return "", false
	}
	c.cgroups = m
	c.cgroupsMax = 0
	for k := range m {
		c.cgroupsMax = max(c.cgroupsMax, k)
	}
	p, ok := m[id]
	return p, ok
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

type cgroupWalk struct {
	m   map[uint64]string
	buf []byte // getdents' buffer, shared: a directory is read whole before its children
}

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
		for i, ch := range name {
			if ch == 0 {
				name = name[:i]
				break
			}
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
