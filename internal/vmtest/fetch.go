package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Image is an unpacked kernel package.
type Image struct {
	Kernel Kernel
	// Vmlinuz is the kernel image to boot.
	Vmlinuz string
	// Release is the kernel release (uname -r).
	Release string
	// ModulesDir is lib/modules/<release> inside the unpacked package.
	ModulesDir string
}

// completeMarker is written into an unpacked package folder once unpacking
// finished, so that an interrupted unpack is never used.
const completeMarker = ".vmtest-complete"

// Fetch returns the unpacked kernel package k from cacheDir, downloading it
// with apt-get download (through its apt source's own state folder when
// k.Source is set) and unpacking it with dpkg-deb -x when it is not there yet.
func Fetch(ctx context.Context, cacheDir string, k Kernel) (*Image, error) {
	dir := filepath.Join(cacheDir, k.Package+"_"+k.Version)
	if err := fetchDeb(ctx, cacheDir, dir, k.Source, k.debSpec()); err != nil {
		return nil, fmt.Errorf("fetch kernel package (is it still served? try apt-cache madison %s): %w", k.Package, err)
	}
	return findImage(dir, k)
}

// fetchDeb downloads the package spec (name:arch[=version]) from the apt
// source named source ("" for the host's apt) and unpacks it into dir,
// unless dir holds a complete earlier unpack.
func fetchDeb(ctx context.Context, cacheDir, dir, source, spec string) error {
	if fileExists(filepath.Join(dir, completeMarker)) {
		return nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return fmt.Errorf("fetch %s: %w", spec, err)
	}
	tmp, err := os.MkdirTemp(cacheDir, "download-")
	if err != nil {
		return fmt.Errorf("fetch %s: %w", spec, err)
	}
	defer os.RemoveAll(tmp)
	if source == "" {
		// The sandbox user (_apt) cannot write into a root-owned cache folder.
		err = runTool(ctx, tmp, "apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", spec)
	} else {
		src, ok := Sources()[source]
		if !ok {
			return fmt.Errorf("fetch %s: unknown apt source %q", spec, source)
		}
		var a *apt
		if a, err = newApt(cacheDir, src); err == nil {
			err = a.download(ctx, tmp, spec)
		}
	}
	if err != nil {
		return fmt.Errorf("fetch %s: %w", spec, err)
	}
	debs, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil || len(debs) != 1 {
		return fmt.Errorf("fetch %s: expected one .deb, found %d", spec, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if err := runTool(ctx, tmp, "dpkg-deb", "-x", debs[0], root); err != nil {
		return fmt.Errorf("unpack %s: %w", spec, err)
	}
	if err := os.WriteFile(filepath.Join(root, completeMarker), []byte(spec+"\n"), 0o644); err != nil {
		return fmt.Errorf("unpack %s: %w", spec, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("unpack %s: %w", spec, err)
	}
	if err := os.Rename(root, dir); err != nil {
		return fmt.Errorf("unpack %s: %w", spec, err)
	}
	return nil
}

func findImage(dir string, k Kernel) (*Image, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if err != nil || len(matches) != 1 {
		return nil, fmt.Errorf("kernel package %s in %s: expected one boot/vmlinuz-*, found %d", k.Package, dir, len(matches))
	}
	img := &Image{Kernel: k, Vmlinuz: matches[0], Release: strings.TrimPrefix(filepath.Base(matches[0]), "vmlinuz-")}
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		p := filepath.Join(dir, d, img.Release)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			img.ModulesDir = p
			return img, nil
		}
	}
	return nil, fmt.Errorf("kernel package %s in %s: no modules folder for %s", k.Package, dir, img.Release)
}

// runTool runs a host tool, folding its stderr into the error.
func runTool(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// qemuFor returns the qemu binary and the Debian package that has it for
// a guest architecture.
func qemuFor(arch string) (bin, pkg string, err error) {
	switch arch {
	case ArchAMD64:
		return "qemu-system-x86_64", "qemu-system-x86", nil
	case ArchARM64:
		return "qemu-system-aarch64", "qemu-system-arm", nil
	}
	return "", "", fmt.Errorf("no qemu for architecture %q", arch)
}

// EnsureQEMU makes sure the qemu system emulator for arch is on PATH. As
// root it installs its Debian package when missing; otherwise the error says
// how to install it.
func EnsureQEMU(ctx context.Context, arch string) (string, error) {
	bin, pkg, err := qemuFor(arch)
	if err != nil {
		return "", err
	}
	if p, err := exec.LookPath(bin); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%s not found: install it with: sudo apt-get install -y %s", bin, pkg)
	}
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", pkg)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("install %s (run apt-get update first?): %w", pkg, err)
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", errors.New(bin + " still not found after installing " + pkg)
	}
	return p, nil
}
