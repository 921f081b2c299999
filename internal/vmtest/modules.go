package vmtest

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Module is a kernel module ready for the initramfs: uncompressed, so that
// the guest loads every kernel's modules the same way (finit_module, no flags).
type Module struct {
	Name string
	Data []byte
}

// ResolveModules finds the named modules in modulesDir, decompresses them and
// returns them with their dependencies (from .modinfo depends=), each
// dependency before the modules that need it.
func ResolveModules(ctx context.Context, modulesDir string, names []string) ([]Module, error) {
	if len(names) == 0 {
		return nil, nil
	}
	index, err := indexModules(modulesDir)
	if err != nil {
		return nil, err
	}
	var (
		out   []Module
		state = map[string]int{} // 1: visiting, 2: done
		visit func(name, neededBy string) error
	)
	visit = func(name, neededBy string) error {
		name = normModName(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("module %s: dependency cycle", name)
		case 2:
			return nil
		}
		path, ok := index[name]
		if !ok {
			if neededBy != "" {
				return fmt.Errorf("module %s (needed by %s) not found in %s", name, neededBy, modulesDir)
			}
			return fmt.Errorf("module %s not found in %s", name, modulesDir)
		}
		state[name] = 1
		data, err := readModule(ctx, path)
		if err != nil {
			return err
		}
		deps, err := moduleDepends(data)
		if err != nil {
			return fmt.Errorf("module %s: %w", path, err)
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, Module{Name: name, Data: data})
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// normModName normalises a module name the way the kernel does ('-' is '_').
func normModName(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// moduleSuffixes are the file endings a kernel module may have in the package.
func moduleSuffixes() [4]string { return [...]string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} }

func indexModules(dir string) (map[string]string, error) {
	index := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		for _, suf := range moduleSuffixes() {
			if base, ok := strings.CutSuffix(d.Name(), suf); ok {
				index[normModName(base)] = path
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules in %s: %w", dir, err)
	}
	return index, nil
}

// readModule reads a module file, decompressing .xz, .zst and .gz with the
// host's xz, zstd and gzip tools.
func readModule(ctx context.Context, path string) ([]byte, error) {
	var tool string
	switch filepath.Ext(path) {
	case ".ko":
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read module: %w", err)
		}
		return data, nil
	case ".xz":
		tool = "xz"
	case ".zst":
		tool = "zstd"
	case ".gz":
		tool = "gzip"
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tool, "-dc", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("decompress module %s with %s: %w: %s", path, tool, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// moduleDepends returns the depends= list of a module's .modinfo section.
func moduleDepends(data []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parse ELF: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	for kv := range bytes.SplitSeq(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
