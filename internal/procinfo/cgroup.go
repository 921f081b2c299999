package procinfo

import (
	"bufio"
	"io"
	"strings"
)

// Container is what a cgroup path tells about the container a process runs in.
type Container struct {
	// ID is the container runtime's 64-hex-digit container id, or "".
	ID string
	// PodUID is the Kubernetes pod UID (dashed form), or "".
	PodUID string
}

// parseCgroupFile reads a /proc/PID/cgroup file and returns the container
// found in its paths. The cgroup v2 line ("0::/path") is preferred; on a
// hybrid or v1 host the controller lines are searched too.
func parseCgroupFile(r io.Reader) (Container, error) {
	var best Container
	s := bufio.NewScanner(r)
	for s.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		line := s.Text()
		i := strings.IndexByte(line, ':')
		if i < 0 {
			continue
		}
		j := strings.IndexByte(line[i+1:], ':')
		if j < 0 {
			continue
		}
		c := parseCgroupPath(line[i+1+j+1:])
		if line[:i] == "0" && line[i+1:i+1+j] == "" && (c.ID != "" || c.PodUID != "") {
			return c, nil // the unified hierarchy wins
		}
		if best.ID == "" && c.ID != "" {
			best.ID = c.ID
		}
		if best.PodUID == "" && c.PodUID != "" {
			best.PodUID = c.PodUID
		}
	}
	return best, s.Err()
}

// containerPrefixes are the runtimes' prefixes of a systemd scope unit that
// names a container: docker-<id>.scope, cri-containerd-<id>.scope, ...
func containerPrefixes() [6]string {
	return [...]string{"docker-", "cri-containerd-", "crio-", "libpod-", "containerd-", "nerdctl-"}
}

// parseCgroupPath extracts the container id and pod UID from one cgroup path,
// as docker, containerd (plain and CRI), CRI-O, podman and the kubelet (cgroupfs
// and systemd drivers, guaranteed, burstable and besteffort pods) lay them out:
//
//	/docker/<id>
//	/system.slice/docker-<id>.scope
//	/kubepods/burstable/pod<uid>/<id>
//	/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
//	/machine.slice/libpod-<id>.scope/container
//
// A conmon or pause-less sandbox scope (libpod-conmon-<id>) is not a container.
// The last component that holds an id wins (nested containers report the
// innermost one).
func parseCgroupPath(p string) Container {
	var c Container
	for p != "" {
		var elem string
		if i := strings.IndexByte(p, '/'); i >= 0 {
			elem, p = p[:i], p[i+1:]
		} else {
			elem, p = p, ""
		}
		if elem == "" {
			continue
		}
		if uid := podUID(elem); uid != "" {
			c.PodUID = uid
			continue
		}
		if id := containerID(elem); id != "" {
			c.ID = id
		}
	}
	return c
}

// containerID returns the container id that one path element names, or "".
func containerID(elem string) string {
	e := strings.TrimSuffix(elem, ".scope")
	if strings.Contains(e, "conmon") {
		return ""
	}
	for _, pre := range containerPrefixes() {
		if strings.HasPrefix(e, pre) {
			e = e[len(pre):]
			break
		}
	}
	if len(e) == 64 && isHex(e) {
		return e
	}
	return ""
}

// podUID returns the pod UID that one path element names (pod<uid> or
// kubepods-<class>-pod<uid>.slice), with dashes, or "".
func podUID(elem string) string {
	e := strings.TrimSuffix(elem, ".slice")
	i := strings.LastIndex(e, "pod")
	if i < 0 {
		return ""
	}
	if i > 0 && e[i-1] != '-' {
		return ""
	}
	u := e[i+3:]
	if len(u) != 36 {
		return ""
	}
	b := []byte(u)
	for k, ch := range b {
		switch k {
		case 8, 13, 18, 23:
			if ch != '-' && ch != '_' {
				return ""
			}
			b[k] = '-'
		default:
			if !isHexByte(ch) {
				return ""
			}
		}
	}
	return string(b)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHexByte(s[i]) {
			return false
		}
	}
	return true
}

func isHexByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f'
}
