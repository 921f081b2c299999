package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupRootIno is the inode number of the root of the cgroup v2 hierarchy
// (kernfs numbers its root 1; the root cgroup's id is 1 too). A cgroup2 mount
// whose root directory has another inode shows a subtree: in a private
// cgroup namespace (a container's default) the cgroup2 mount is the
// container's own cgroup, and programs attached there see only it.
const cgroupRootIno = 1

// CgroupV2Mount returns the first cgroup2 mount in /proc/self/mountinfo that
// shows the whole hierarchy (its root directory is the root cgroup). When
// every cgroup2 mount shows a subtree (a container's private cgroup
// namespace), the error names the mount to add.
func CgroupV2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup v2 mount: %w", err)
	}
	defer f.Close()
	return parseCgroup2Mount(f, rootIno)
}

// rootIno returns the inode number of dir.
func rootIno(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", dir, err)
	}
	return st.Ino, nil
}

// errNoCgroup2 is returned when no cgroup2 file system is mounted at all.
var errNoCgroup2 = errors.New("no cgroup v2 (cgroup2) mount found: mount one, e.g. mount -t cgroup2 none /sys/fs/cgroup")

func parseCgroup2Mount(r io.Reader, ino func(string) (uint64, error)) (string, error) {
	mounts, err := cgroup2Mounts(r)
	if err != nil {
		return "", err
	}
	if len(mounts) == 0 {
		return "", errNoCgroup2
	}
	var subtrees []string
	for _, m := range mounts {
		n, err := ino(m)
		if err != nil {
			continue // a mount we cannot see into (another mount covers it)
		}
		if n == cgroupRootIno {
			return m, nil
		}
		subtrees = append(subtrees, m)
	}
	return "", subtreeError(subtrees)
}

// subtreeError explains that only subtrees of the cgroup hierarchy are
// visible and names the mount to add.
func subtreeError(mounts []string) error {
	return fmt.Errorf("the cgroup2 mounts here (%s) show only a subtree of the host's cgroup hierarchy, "+
		"not its root (a private cgroup namespace, as in a container): connects and DNS outside it would be missed. "+
		"Mount the host's cgroup2 tree into the container (podman/docker: -v /sys/fs/cgroup:/host/sys/fs/cgroup:ro; "+
		"Kubernetes: a hostPath volume of /sys/fs/cgroup) and it is found by itself, or set cgroup_path to it, "+
		"or run in the host's cgroup namespace (--cgroupns=host)", strings.Join(mounts, ", "))
}

// CgroupRoot is the root of the host's cgroup v2 hierarchy as this process
// sees it: a mount found in mountinfo or one of our own. Close unmounts ours.
type CgroupRoot struct {
	// Path is the directory of the root cgroup.
	Path string
	// Mounted is true when the receiver mounted cgroup2 itself (at Path).
	Mounted bool
}

// FindCgroupRoot returns the host's cgroup v2 root: the first cgroup2 mount
// that shows the whole hierarchy. When no cgroup2 file system is mounted at
// all (a cgroup-v1-only host) it mounts one on a new temporary folder; the
// kernel always has the v2 hierarchy (Cilium does the same). That needs
// CAP_SYS_ADMIN, and is refused as a subtree in a private cgroup namespace.
func FindCgroupRoot() (*CgroupRoot, error) {
	p, err := CgroupV2Mount()
	if err == nil {
		return &CgroupRoot{Path: p}, nil
	}
	if !errors.Is(err, errNoCgroup2) {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tcpconnect-cgroup2-")
	if err != nil {
		return nil, fmt.Errorf("no cgroup2 mount; make a folder to mount one: %w", err)
	}
	if err := unix.Mount("cgroup2", dir, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("no cgroup2 mount, and mounting one at %s failed (needs CAP_SYS_ADMIN): %w; mount one, e.g. mount -t cgroup2 none /sys/fs/cgroup/unified", dir, err)
	}
	root := &CgroupRoot{Path: dir, Mounted: true}
	if n, err := rootIno(dir); err != nil || n != cgroupRootIno {
		_ = root.Close()
		return nil, subtreeError([]string{dir + " (mounted by the receiver)"})
	}
	return root, nil
}

// Close unmounts and removes the cgroup2 mount that FindCgroupRoot made;
// it does nothing for a mount it found.
func (c *CgroupRoot) Close() error {
	if c == nil || !c.Mounted {
		return nil
	}
	c.Mounted = false
	if err := unix.Unmount(c.Path, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", c.Path, err)
	}
	if err := os.Remove(c.Path); err != nil {
		return fmt.Errorf("remove %s: %w", c.Path, err)
	}
	return nil
}

// cgroup2Mounts returns the mount points of every cgroup2 mount in a
// mountinfo file, in its order.
func cgroup2Mounts(r io.Reader) ([]string, error) {
	var out []string
	s := bufio.NewScanner(r)
	for s.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		fields := strings.Fields(s.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && i >= 4 {
				if fields[i+1] == "cgroup2" {
					out = append(out, unescapeMount(fields[4]))
				}
				break
			}
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// isCgroup2MountPoint reports whether dir is where a cgroup2 file system is
// mounted (its root, not a folder below it).
func isCgroup2MountPoint(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("find cgroup v2 mounts: %w", err)
	}
	defer f.Close()
	mounts, err := cgroup2Mounts(f)
	if err != nil {
		return false, err
	}
	clean := filepath.Clean(dir)
	for _, m := range mounts {
		if filepath.Clean(m) == clean {
			return true, nil
		}
	}
	return false, nil
}

// unescapeMount undoes the octal escapes (\040 for space) of mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			v := (int(s[i+1]-'0') << 6) | (int(s[i+2]-'0') << 3) | int(s[i+3]-'0')
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
