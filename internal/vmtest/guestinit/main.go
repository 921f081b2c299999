// Command guestinit is the /init of the VM test initramfs. The vmtest runner
// builds it statically (CGO_ENABLED=0). It mounts the kernel file systems,
// brings lo up, loads the modules named in the plan, runs each command of the
// plan (stdout and stderr go to the console), prints one result line per
// command and a final done line, and powers the machine off.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/vmtest/guest"
)

func main() {
	// Whatever happens, power off so that qemu exits instead of the kernel
	// panicking on a dead init. A Go panic is printed first; the host then
	// finds no done line and fails the run.
	defer powerOff()
	defer func() {
		if r := recover(); r != nil {
			fmt.Printf("\nvmtest init: panic: %v\n", r)
		}
	}()
	runPlan()
}

func runPlan() {
	plan, err := setup()
	if err != nil {
		nonce := ""
		if plan != nil {
			nonce = plan.Nonce
		}
		fmt.Println()
		fmt.Println(guest.FormatError(nonce, err.Error()))
		return
	}
	for _, c := range plan.Commands {
		res := run(plan, c)
		fmt.Println()
		fmt.Println(guest.FormatResult(plan.Nonce, res))
	}
	fmt.Println(guest.FormatDone(plan.Nonce))
}

func powerOff() {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(os.Stderr, "vmtest init: power off: %v\n", err)
	}
	// Reached only when poweroff failed: exit, and let the kernel panic.
	os.Exit(1)
}

// setup prepares the machine and returns the plan. The plan is returned even
// with an error when it could be read, so that the error line has the nonce.
func setup() (*guest.Plan, error) {
	if err := mountAll(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(guest.PlanPath)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	var plan guest.Plan
	if err := json.Unmarshal(data, &plan); err != nil {
		return nil, fmt.Errorf("parse plan %s: %w", guest.PlanPath, err)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		fmt.Printf("vmtest: uname -r: %s\n", unix.ByteSliceToString(uts.Release[:]))
	}
	lsm, err := os.ReadFile("/sys/kernel/security/lsm")
	if err != nil {
		return &plan, fmt.Errorf("read active LSMs: %w", err)
	}
	fmt.Printf("vmtest: /sys/kernel/security/lsm: %s\n", strings.TrimSpace(string(lsm)))
	if plan.BusyboxInstall {
		// Links go next to the applet's usual place; existing files stay.
		if out, err := exec.Command("/bin/busybox", "--install", "-s").CombinedOutput(); err != nil {
			return &plan, fmt.Errorf("busybox --install -s: %w: %s", err, out)
		}
	}
	if err := linkUp("lo"); err != nil {
		return &plan, err
	}
	for _, m := range plan.Modules {
		if err := loadModule(m); err != nil {
			return &plan, err
		}
		fmt.Printf("vmtest: loaded module %s\n", m)
	}
	return &plan, nil
}

func mountAll() error {
	mounts := []struct {
		fstype, target string
		flags          uintptr
	}{
		{"devtmpfs", "/dev", unix.MS_NOSUID},
		{"proc", "/proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"sysfs", "/sys", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"securityfs", "/sys/kernel/security", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"tracefs", "/sys/kernel/tracing", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"debugfs", "/sys/kernel/debug", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"bpf", "/sys/fs/bpf", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"cgroup2", "/sys/fs/cgroup", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("create mount point %s: %w", m.target, err)
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	// The root file system is the initramfs itself (tmpfs): /tmp lives there.
	for _, dir := range []string{"/tmp", "/run"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	if err := os.Chmod("/tmp", 0o1777); err != nil {
		return fmt.Errorf("chmod /tmp: %w", err)
	}
	return nil
}

// linkUp sets IFF_UP on the named interface.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring %s up: socket: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring %s up: get flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring %s up: set flags: %w", name, err)
	}
	return nil
}

// loadModule loads a kernel module file; a module already loaded is fine.
// Compressed modules (.xz, .zst, .gz) are left to the kernel's in-kernel
// decompression; the runner normally ships them uncompressed.
func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	flags := 0
	switch filepath.Ext(path) {
	case ".xz", ".zst", ".gz":
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: finit_module: %w", path, err)
	}
	return nil
}

// run runs one command, its output going straight to the console.
func run(plan *guest.Plan, c guest.Command) guest.Result {
	fmt.Printf("vmtest: === RUN %s: %s\n", c.Name, strings.Join(c.Args, " "))
	env := map[string]string{
		"PATH":          "/bin:/sbin:/usr/bin:/usr/sbin",
		"HOME":          "/root",
		"TMPDIR":        "/tmp",
		"VMTEST_GUEST":  "1",
		"VMTEST_KERNEL": plan.Kernel,
	}
	for k, v := range plan.Env {
		env[k] = v
	}
	for k, v := range c.Env {
		env[k] = v
	}
	cmd := exec.Command(c.Args[0], c.Args[1:]...)
	cmd.Args = c.Args
	cmd.Env = envList(env)
	cmd.Dir = c.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	res := guest.Result{Name: c.Name, Seconds: time.Since(start).Seconds()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Exit = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Exit = 128 + int(ws.Signal())
		}
	default:
		fmt.Printf("vmtest: %s: %v\n", c.Name, err)
		res.Exit = 127
	}
	return res
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
