// Package vmtest runs programs (typically static Go test binaries) inside
// qemu on pinned Debian kernels. It fetches the kernel packages, builds an
// initramfs with a static Go /init, the programs, extra files, busybox and
// kernel modules, boots one VM per kernel running every command in turn, and
// checks each command's result line on the serial console.
//
// A command whose result line is missing is a failure, never a pass.
package vmtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/vmtest/guest"
)

// Plan says what to run in the VM. It is read from a JSON file or assembled
// from command-line flags.
type Plan struct {
	// Kernels are pinned kernel names (see Kernels); empty or ["all"] means all.
	Kernels []string `json:"kernels,omitempty"`
	// Timeout bounds one kernel's whole boot, "10m" by default.
	Timeout Duration `json:"timeout,omitzero"`
	// MemoryMB is the guest memory, 1024 by default.
	MemoryMB int `json:"memory_mb,omitempty"`
	// CPUs is the number of guest CPUs, 2 by default.
	CPUs int `json:"cpus,omitempty"`
	// NoBusybox leaves /bin/busybox and its applet links out of the initramfs.
	NoBusybox bool `json:"no_busybox,omitempty"`
	// Cmdline is added to the kernel command line, e.g. an lsm= list.
	Cmdline string `json:"cmdline,omitempty"`
	// Modules are kernel module names (veth, overlay) loaded before the
	// commands run; dependencies are added.
	Modules []string `json:"modules,omitempty"`
	// Env applies to every command.
	Env map[string]string `json:"env,omitempty"`
	// Files are put into the initramfs.
	Files []File `json:"files,omitempty"`
	// Commands run one after another in the guest.
	Commands []guest.Command `json:"commands"`
}

// File is one file of the initramfs: a host file, or literal content.
type File struct {
	// Host is a host path; relative paths are relative to the plan file's
	// folder (or the working directory for flags).
	Host string `json:"host,omitempty"`
	// Content is used when Host is empty.
	Content string `json:"content,omitempty"`
	// Guest is the absolute path in the guest.
	Guest string `json:"guest"`
	// Mode is the permission bits; the host file's, or 0644 for content.
	Mode os.FileMode `json:"mode,omitempty"`
}

// Duration is a time.Duration written as "10m" in JSON.
type Duration time.Duration

// UnmarshalJSON parses a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// Defaults of a Plan.
const (
	DefaultTimeout  = 10 * time.Minute
	DefaultMemoryMB = 1024
	DefaultCPUs     = 2
)

// LoadPlan reads a JSON plan; host paths in it are made relative to its folder.
func LoadPlan(file string) (*Plan, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	p, err := ParsePlan(data)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", file, err)
	}
	for i, f := range p.Files {
		if f.Host != "" && !filepath.IsAbs(f.Host) {
			p.Files[i].Host = filepath.Join(filepath.Dir(file), f.Host)
		}
	}
	return p, nil
}

// ParsePlan decodes a JSON plan strictly (unknown fields are errors).
func ParsePlan(data []byte) (*Plan, error) {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var p Plan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decode plan: %w", err)
	}
	return &p, nil
}

// withDefaults returns a copy of p with defaults filled in.
func (p Plan) withDefaults() Plan {
	if p.Timeout <= 0 {
		p.Timeout = Duration(DefaultTimeout)
	}
	if p.MemoryMB <= 0 {
		p.MemoryMB = DefaultMemoryMB
	}
	if p.CPUs <= 0 {
		p.CPUs = DefaultCPUs
	}
	return p
}

// Validate checks a plan without touching the file system.
func (p *Plan) Validate() error {
	var errs []error
	if len(p.Commands) == 0 {
		errs = append(errs, errors.New("no commands"))
	}
	names := map[string]bool{}
	for i, c := range p.Commands {
		switch {
		case !guest.ValidName(c.Name):
			errs = append(errs, fmt.Errorf("command %d: invalid name %q (letters, digits and ._-/:+, only)", i, c.Name))
		case names[c.Name]:
			errs = append(errs, fmt.Errorf("command %d: duplicate name %q", i, c.Name))
		}
		names[c.Name] = true
		if len(c.Args) == 0 || !path.IsAbs(c.Args[0]) {
			errs = append(errs, fmt.Errorf("command %q: args[0] must be an absolute guest path", c.Name))
		}
	}
	guests := map[string]bool{}
	for _, f := range p.Files {
		switch {
		case !path.IsAbs(f.Guest):
			errs = append(errs, fmt.Errorf("file %q: guest path %q is not absolute", f.Host, f.Guest))
		case guests[path.Clean(f.Guest)]:
			errs = append(errs, fmt.Errorf("file %q: guest path %q used twice", f.Host, f.Guest))
		}
		guests[path.Clean(f.Guest)] = true
		if f.Host != "" && f.Content != "" {
			errs = append(errs, fmt.Errorf("file %q: both host and content given", f.Guest))
		}
	}
	for _, k := range append(mapKeys(p.Env), commandEnvKeys(p.Commands)...) {
		if k == "" || strings.ContainsAny(k, "= \x00") {
			errs = append(errs, fmt.Errorf("invalid environment variable name %q", k))
		}
	}
	if _, err := SelectKernels(p.Kernels); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func mapKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func commandEnvKeys(cs []guest.Command) []string {
	var out []string
	for _, c := range cs {
		out = append(out, mapKeys(c.Env)...)
	}
	return out
}

// GuestTestDir is where TestMatrix puts test binaries in the guest.
const GuestTestDir = "/tests"

// TestMatrix returns the files and commands that run each host test binary
// once per mode, with envKey=mode in the environment, named
// "<name>/<mode>". A binary is a host path, named by its base name, or
// "NAME=PATH": the same binary may then run under two names with different
// tests and modes (a binary's mode-independent tests once per boot, the rest
// in every mode); the file goes into the guest once. With no modes each
// binary runs once, named by its name. args are passed to every run (e.g.
// -test.v). When tests has the binary's name, only those top-level tests run
// (-test.run) and each must pass (Command.WantTests). binModes, by name,
// replaces modes for one binary (an architecture where TCG is slow runs the
// costly binaries in fewer modes).
func TestMatrix(binaries, modes []string, envKey string, args []string, tests, binModes map[string][]string) ([]File, []guest.Command) {
	var (
		files []File
		cmds  []guest.Command
		added = map[string]bool{}
	)
	for _, b := range binaries {
		name, host := TestBinaryName(b)
		g := path.Join(GuestTestDir, filepath.Base(host))
		if !added[g] {
			added[g] = true
			files = append(files, File{Host: host, Guest: g})
		}
		argv := append([]string{g}, args...)
		want := tests[name]
		if len(want) > 0 {
			argv = append(argv, "-test.run=^("+strings.Join(want, "|")+")$")
		}
		ms := modes
		if bm, ok := binModes[name]; ok {
			ms = bm
		}
		if len(ms) == 0 {
			cmds = append(cmds, guest.Command{Name: name, Args: argv, Dir: GuestTestDir, WantTests: want})
			continue
		}
		for _, m := range ms {
			cmds = append(cmds, guest.Command{
				Name:      name + "/" + m,
				Args:      argv,
				Env:       map[string]string{envKey: m},
				Dir:       GuestTestDir,
				WantTests: want,
			})
		}
	}
	return files, cmds
}

// TestBinaryName splits a TestMatrix binary, "NAME=PATH" or "PATH", into
// its name (NAME, or PATH's base name) and host path.
func TestBinaryName(b string) (name, host string) {
	if n, h, ok := strings.Cut(b, "="); ok && n != "" && !strings.Contains(n, "/") {
		return n, h
	}
	return filepath.Base(b), b
}
