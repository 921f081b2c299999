// Package guestcheck holds privileged smoke tests that prove the VM test
// runner gives a guest what the project's tests need: bpf among the active
// LSMs, BTF, eBPF program loading, the veth module and network namespaces.
// They run only in the VM (VMTEST_GUEST=1, set by the guest /init) and skip
// elsewhere.
package guestcheck

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

func inGuest(t *testing.T) {
	t.Helper()
	if os.Getenv("VMTEST_GUEST") != "1" {
		t.Skip("runs only in the vmtest guest (VMTEST_GUEST=1)")
	}
}

func TestKernelFeatures(t *testing.T) {
	inGuest(t)
	// The harness boots each kernel with bpf in its active LSM list and once
	// without (TCPCONNECT_EXPECT_LSM=inactive): the list must agree.
	bpfLSM, noBPFLSM := "bpf", ""
	if os.Getenv("TCPCONNECT_EXPECT_LSM") == "inactive" {
		bpfLSM, noBPFLSM = "", "bpf"
	}
	tests := []struct {
		name   string
		file   string
		want   string // a comma-separated item the file must list; "" only needs the file
		unwant string // an item it must not list
	}{
		{"bpf in the LSM list as expected", "/sys/kernel/security/lsm", bpfLSM, noBPFLSM},
		{"kernel BTF", "/sys/kernel/btf/vmlinux", "", ""},
		{"veth module loaded", "/sys/module/veth/refcnt", "", ""},
		{"cgroup v2 mounted", "/sys/fs/cgroup/cgroup.controllers", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatalf("read %s: %v", tt.file, err)
			}
			items := strings.Split(strings.TrimSpace(string(data)), ",")
			if tt.want != "" && !slices.Contains(items, tt.want) {
				t.Fatalf("%s = %q, want it to list %q", tt.file, data, tt.want)
			}
			if tt.unwant != "" && slices.Contains(items, tt.unwant) {
				t.Fatalf("%s = %q, want it not to list %q", tt.file, data, tt.unwant)
			}
		})
	}
}

func TestSocketFilterLoads(t *testing.T) {
	inGuest(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("remove memlock limit: %v", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "vmtest_accept",
		Type: ebpf.SocketFilter,
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
		License: "GPL",
	})
	if err != nil {
		t.Fatalf("load socket filter: %v", err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		t.Fatalf("program info: %v", err)
	}
	t.Logf("loaded %s (type %s)", info.Name, info.Type)
}

// TestVethInNetns creates a veth pair with busybox ip in a new network
// namespace, on a locked thread whose namespace dies with it.
func TestVethInNetns(t *testing.T) {
	inGuest(t)
	errc := make(chan error, 1)
	var names []string
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the namespace
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return err
			}
			for _, args := range [][]string{
				{"ip", "link", "add", "vt0", "type", "veth", "peer", "name", "vt1"},
				{"ip", "link", "set", "vt0", "up"},
				{"ip", "link"},
			} {
				out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
				t.Logf("%s:\n%s", strings.Join(args, " "), out)
				if err != nil {
					return err
				}
			}
			ifs, err := net.Interfaces()
			if err != nil {
				return err
			}
			for _, i := range ifs {
				names = append(names, i.Name)
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("veth in a new netns: %v", err)
	}
	// busybox ip ignores "peer name": the peer gets a kernel-chosen name.
	if len(names) != 3 || !slices.Contains(names, "lo") || !slices.Contains(names, "vt0") {
		t.Fatalf("interfaces in the new netns = %v, want lo, vt0 and its peer", names)
	}
	host, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range host {
		if i.Name == "vt0" {
			t.Fatal("vt0 is visible in the initial netns")
		}
	}
}
