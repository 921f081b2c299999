// Command install-profile writes the agent's seccomp profile into the
// kubelet's seccomp directory on its node: the DaemonSet's init container
// (deploy/kubernetes/agent.yaml) runs it under the runtime's default
// profile before the agent container, which the runtime then creates under
// that Localhost profile.
//
//	install-profile SRC DST
//
// SRC (the ConfigMap's file) must be a JSON object; DST is written through
// a temporary file in its directory and renamed into place, so a container
// created meanwhile on the node reads the old profile or the new one, never
// half of one. Every error names the file.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: install-profile SRC DST")
		os.Exit(2)
	}
	if err := install(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "install-profile:", err)
		os.Exit(1)
	}
	fmt.Printf("install-profile: wrote %s\n", os.Args[2])
}

// install copies the seccomp profile src to dst atomically (temporary file,
// fsync, rename), mode 0644, after checking that src is a JSON object.
func install(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read the seccomp profile: %w", err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return fmt.Errorf("the seccomp profile %s is not a JSON object: %w", src, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return fmt.Errorf("cannot write the seccomp profile %s: %w", dst, err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("cannot write the seccomp profile %s: %w", dst, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("cannot write the seccomp profile %s: %w", dst, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("cannot write the seccomp profile %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cannot write the seccomp profile %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("cannot write the seccomp profile %s: %w", dst, err)
	}
	done = true
	return nil
}
