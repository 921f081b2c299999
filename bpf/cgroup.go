package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// CgroupV2Mount returns the first cgroup2 mount point in /proc/self/mountinfo.
func CgroupV2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup v2 mount: %w", err)
	}
	defer f.Close()
	return parseCgroup2Mount(f)
}

func parseCgroup2Mount(r io.Reader) (string, error) {
	mounts, err := cgroup2Mounts(r)
	if err != nil {
		return "", err
	}
	if len(mounts) == 0 {
		return "", errors.New("no cgroup v2 (cgroup2) mount found: mount one, e.g. mount -t cgroup2 none /sys/fs/cgroup")
	}
	return mounts[0], nil
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
