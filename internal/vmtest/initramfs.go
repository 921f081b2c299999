package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/tcpconnect/tcpconnect/internal/vmtest/guest"
)

// initramfsSpec is everything one initramfs holds.
type initramfsSpec struct {
	Init    string // host path of the static guest /init
	Plan    guest.Plan
	Modules []Module
	Files   []File
	Busybox string // host path of a static busybox, or ""
	Arch    string // the guest architecture every ELF file must be built for
}

// guestModuleDir is where modules go in the guest.
const guestModuleDir = "/lib/modules/vmtest"

// writeInitramfs writes an uncompressed newc archive to file. No compression:
// the kernel copies it in at once, where gzip costs seconds under TCG.
func writeInitramfs(ctx context.Context, file string, spec initramfsSpec) (err error) {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close initramfs: %w", cerr)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	c := newCPIOWriter(bw)
	for _, d := range []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/etc", "/root", "/tmp", "/run",
		"/proc", "/sys", "/dev", "/lib/modules", "/vmtest", GuestTestDir} {
		c.Dir(d)
	}
	// The kernel opens /dev/console for /init before devtmpfs is mounted.
	c.CharDev("/dev/console", 0o600, 5, 1)
	c.CharDev("/dev/null", 0o666, 1, 3)
	if err := addHostFile(c, "/init", spec.Init, 0o755, spec.Arch); err != nil {
		return err
	}

	plan := spec.Plan
	plan.Modules = nil
	// A foreign busybox cannot list its applets here: the guest links them.
	plan.BusyboxInstall = spec.Busybox != "" && spec.Arch != runtime.GOARCH
	for _, m := range spec.Modules {
		p := path.Join(guestModuleDir, m.Name+".ko")
		c.File(p, 0o644, int64(len(m.Data)), bytes.NewReader(m.Data))
		plan.Modules = append(plan.Modules, p)
	}
	pj, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		return fmt.Errorf("encode guest plan: %w", err)
	}
	c.File(guest.PlanPath, 0o644, int64(len(pj)), bytes.NewReader(pj))

	taken := map[string]bool{}
	for _, f := range spec.Files {
		taken[path.Clean(f.Guest)] = true
		if f.Host == "" {
			mode := f.Mode.Perm()
			if mode == 0 {
				mode = 0o644
			}
			c.File(f.Guest, uint32(mode), int64(len(f.Content)), strings.NewReader(f.Content))
			continue
		}
		if err := addHostFile(c, f.Guest, f.Host, f.Mode.Perm(), spec.Arch); err != nil {
			return err
		}
	}
	if spec.Busybox != "" {
		if err := addBusybox(ctx, c, spec.Busybox, spec.Arch, taken, !plan.BusyboxInstall); err != nil {
			return err
		}
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	return nil
}

// addHostFile copies a host file into the archive; perm 0 keeps the host's.
func addHostFile(c *cpioWriter, guestPath, hostPath string, perm os.FileMode, arch string) error {
	if err := checkBinary(hostPath, arch); err != nil {
		return err
	}
	f, err := os.Open(hostPath)
	if err != nil {
		return fmt.Errorf("initramfs file %s: %w", guestPath, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("initramfs file %s: %w", guestPath, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("initramfs file %s: %s is not a regular file", guestPath, hostPath)
	}
	if perm == 0 {
		perm = st.Mode().Perm()
	}
	c.File(guestPath, uint32(perm), st.Size(), f)
	if c.err != nil {
		return fmt.Errorf("initramfs file %s from %s: %w", guestPath, hostPath, c.err)
	}
	return nil
}

// elfMachines maps a guest architecture to its ELF machine.
var elfMachines = map[string]elf.Machine{ArchAMD64: elf.EM_X86_64, ArchARM64: elf.EM_AARCH64}

// checkBinary fails for an ELF executable that the arch guest cannot run:
// one built for another machine, or one that is dynamically linked (the
// guest has no libc and no loader). Files that are not ELF pass.
func checkBinary(file, arch string) error {
	f, err := elf.Open(file)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) || errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("initramfs file %s: %w", file, err)
	}
	defer f.Close()
	exe := f.Type == elf.ET_EXEC || f.Type == elf.ET_DYN
	if want, ok := elfMachines[arch]; ok && exe && f.Machine != want {
		return fmt.Errorf("initramfs file %s is built for %s, the guest is %s: build it with GOARCH=%s", file, f.Machine, arch, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("initramfs file %s is dynamically linked; the guest has no libc: build it with CGO_ENABLED=0 (or link it statically)", file)
		}
	}
	return nil
}

// addBusybox adds busybox at /bin/busybox and, when list is set (busybox
// runs on this host), a /bin link for each of its applets, except where a
// caller's file takes that path.
func addBusybox(ctx context.Context, c *cpioWriter, bin, arch string, taken map[string]bool, list bool) error {
	if err := addHostFile(c, "/bin/busybox", bin, 0o755, arch); err != nil {
		return err
	}
	if !list {
		return nil
	}
	out, err := exec.CommandContext(ctx, bin, "--list").Output()
	if err != nil {
		return fmt.Errorf("list busybox applets: %w", err)
	}
	for a := range strings.FieldsSeq(string(out)) {
		p := path.Join("/bin", a)
		if a == "busybox" || strings.Contains(a, "/") || taken[p] {
			continue
		}
		c.Symlink(p, "busybox")
	}
	return nil
}

// FindBusybox returns a static busybox binary for arch. For the host's
// architecture it is the host's, installing Debian's busybox-static as root
// when none is found; for another it is busybox-static of that architecture,
// fetched into cacheDir through the apt source of that architecture's kernels.
func FindBusybox(ctx context.Context, cacheDir, arch string) (string, error) {
	if arch != runtime.GOARCH {
		for _, k := range Kernels() {
			if k.arch() != arch || k.Source == "" {
				continue
			}
			dir := filepath.Join(cacheDir, "busybox-static_"+arch)
			if err := fetchDeb(ctx, cacheDir, dir, k.Source, "busybox-static:"+arch); err != nil {
				return "", fmt.Errorf("busybox for %s: %w", arch, err)
			}
			return filepath.Join(dir, "bin", "busybox"), nil
		}
		return "", fmt.Errorf("busybox for %s: no apt source of that architecture", arch)
	}
	candidates := []string{"/bin/busybox", "/usr/bin/busybox"}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil && checkBinary(c, arch) == nil {
			return c, nil
		}
	}
	if os.Geteuid() != 0 {
		return "", errors.New("no static busybox at /bin/busybox: install it with: sudo apt-get install -y busybox-static")
	}
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "busybox-static")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("install busybox-static: %w", err)
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil && checkBinary(c, arch) == nil {
			return c, nil
		}
	}
	return "", errors.New("no static busybox even after installing busybox-static")
}
