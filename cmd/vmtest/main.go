// Command vmtest runs programs, typically static Go test binaries, inside
// qemu on the pinned Debian kernels (see internal/vmtest), one boot per
// kernel, and fails unless every command reported exit 0.
//
//	go run ./cmd/vmtest -kernels all -mode-matrix lsm,fentry,kprobe,cgroup,auto \
//	    -test _build/vm/bpf.test -test _build/vm/tcpconnectreceiver.test \
//	    -file _build/otelcol-tcpconnect:/bin/otelcol-tcpconnect -module veth
//
// A JSON plan (-plan) holds the same settings; flags add to it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/vmtest"
	"github.com/tcpconnect/tcpconnect/internal/vmtest/guest"
)

// listFlag is a repeatable flag; comma-separated values are split when split is set.
type listFlag struct {
	vals  []string
	split bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }

func (l *listFlag) Set(v string) error {
	if l.split {
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				l.vals = append(l.vals, s)
			}
		}
		return nil
	}
	l.vals = append(l.vals, v)
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		planFile  = flag.String("plan", "", "JSON plan file (see internal/vmtest.Plan)")
		kernels   = &listFlag{split: true}
		modes     = &listFlag{split: true}
		modules   = &listFlag{split: true}
		tests     = &listFlag{}
		runs      = &listFlag{}
		envs      = &listFlag{}
		files     = &listFlag{}
		wantTests = &listFlag{}
		binModes  = &listFlag{}
		cmdline   = flag.String("cmdline", "", "added to the guest kernel's command line (e.g. an lsm= list)")
		modeEnv   = flag.String("mode-env", "TCPCONNECT_ATTACH", "environment variable that carries the -mode-matrix mode")
		testArgs  = flag.String("test-args", "-test.v", "arguments for each -test binary (shell-like quoting)")
		timeout   = flag.Duration("timeout", 0, "timeout per kernel boot (default 10m)")
		memory    = flag.Int("mem", 0, "guest memory in MiB (default 1024)")
		cpus      = flag.Int("smp", 0, "guest CPUs (default 2)")
		noBusybox = flag.Bool("no-busybox", false, "leave busybox out of the initramfs")
		fetchOnly = flag.Bool("fetch-only", false, "only fetch and unpack the kernels")
		list      = flag.Bool("list-kernels", false, "print the pinned kernels and exit")
		privDirs  = flag.String("privileged", "", "print the tests of the Go packages in these folders (comma-separated) that call privtest.Require, one 'FOLDER TestName' a line, and exit")
	)
	flag.Var(kernels, "kernels", "kernels to boot: names from -list-kernels, comma-separated, or all")
	flag.Var(modes, "mode-matrix", "run each -test binary once per mode, with -mode-env set to it")
	flag.Var(modules, "module", "kernel module to load in the guest (repeatable or comma-separated)")
	flag.Var(tests, "test", "host test binary to run as /tests/BASENAME, named by its base name, or NAME=PATH to run one binary under a second name with its own -tests and -modes (repeatable)")
	flag.Var(runs, "run", "command 'NAME=/guest/path arg...' (repeatable; shell-like quoting, no expansion)")
	flag.Var(envs, "env", "KEY=VALUE for every command (repeatable)")
	flag.Var(files, "file", "HOSTPATH:GUESTPATH to put into the initramfs (repeatable)")
	flag.Var(wantTests, "tests", "BINARY=TestA,TestB: run only these top-level tests of -test BINARY (base name), each of which must print PASS (repeatable)")
	flag.Var(binModes, "modes", "BINARY=mode1,mode2: run -test BINARY (base name) in these modes instead of -mode-matrix's (repeatable)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if *privDirs != "" {
		for dir := range strings.SplitSeq(*privDirs, ",") {
			names, err := vmtest.PrivilegedTests(dir)
			if err != nil {
				return err
			}
			for _, n := range names {
				fmt.Println(dir, n)
			}
		}
		return nil
	}
	if *list {
		for _, k := range vmtest.Kernels() {
			fmt.Printf("%s\t%s=%s\n", k.Name, k.Package, k.Version)
		}
		return nil
	}

	plan := &vmtest.Plan{}
	if *planFile != "" {
		var err error
		if plan, err = vmtest.LoadPlan(*planFile); err != nil {
			return err
		}
	}
	if len(kernels.vals) > 0 {
		plan.Kernels = kernels.vals
	}
	if *timeout > 0 {
		plan.Timeout = vmtest.Duration(*timeout)
	}
	if *memory > 0 {
		plan.MemoryMB = *memory
	}
	if *cpus > 0 {
		plan.CPUs = *cpus
	}
	plan.NoBusybox = plan.NoBusybox || *noBusybox
	if *cmdline != "" {
		plan.Cmdline = strings.TrimSpace(plan.Cmdline + " " + *cmdline)
	}
	plan.Modules = append(plan.Modules, modules.vals...)
	for _, e := range envs.vals {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			return fmt.Errorf("-env %q: want KEY=VALUE", e)
		}
		if plan.Env == nil {
			plan.Env = map[string]string{}
		}
		plan.Env[k] = v
	}
	for _, f := range files.vals {
		h, g, ok := strings.Cut(f, ":")
		if !ok {
			return fmt.Errorf("-file %q: want HOSTPATH:GUESTPATH", f)
		}
		plan.Files = append(plan.Files, vmtest.File{Host: h, Guest: g})
	}
	for _, r := range runs.vals {
		name, cmdline, ok := strings.Cut(r, "=")
		if !ok {
			return fmt.Errorf("-run %q: want NAME=/guest/path arg", r)
		}
		args, err := splitArgs(cmdline)
		if err != nil {
			return fmt.Errorf("-run %q: %w", r, err)
		}
		plan.Commands = append(plan.Commands, guest.Command{Name: name, Args: args})
	}
	targs, err := splitArgs(*testArgs)
	if err != nil {
		return fmt.Errorf("-test-args: %w", err)
	}
	want, err := binaryLists("-tests", "BINARY=TestA,TestB", wantTests.vals, tests.vals)
	if err != nil {
		return err
	}
	bm, err := binaryLists("-modes", "BINARY=mode1,mode2", binModes.vals, tests.vals)
	if err != nil {
		return err
	}
	tf, tc := vmtest.TestMatrix(tests.vals, modes.vals, *modeEnv, targs, want, bm)
	plan.Files = append(plan.Files, tf...)
	plan.Commands = append(plan.Commands, tc...)

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &vmtest.Runner{ModuleRoot: root}

	if *fetchOnly {
		ks, err := vmtest.SelectKernels(plan.Kernels)
		if err != nil {
			return err
		}
		for _, k := range ks {
			img, err := vmtest.Fetch(ctx, filepath.Join(root, ".cache", "vm"), k)
			if err != nil {
				return err
			}
			fmt.Printf("%s\t%s\n", k.Name, img.Vmlinuz)
		}
		return nil
	}

	start := time.Now()
	reports, err := r.Run(ctx, plan)
	ok, serr := vmtest.WriteSummary(os.Stdout, reports)
	fmt.Printf("vmtest: total wall time %.1fs\n", time.Since(start).Seconds())
	switch {
	case err != nil:
		return err
	case serr != nil:
		return serr
	case !ok:
		return errors.New("failed")
	}
	return nil
}

// binaryLists parses flag values "BINARY=a,b" into lists by binary base
// name; each BINARY must be the base name of a -test binary.
func binaryLists(flagName, form string, vals, binaries []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, w := range vals {
		bin, names, ok := strings.Cut(w, "=")
		if !ok || names == "" {
			return nil, fmt.Errorf("%s %q: want %s", flagName, w, form)
		}
		for n := range strings.SplitSeq(names, ",") {
			if n = strings.TrimSpace(n); n != "" {
				out[bin] = append(out[bin], n)
			}
		}
	}
	for bin := range out {
		found := false
		for _, t := range binaries {
			name, _ := vmtest.TestBinaryName(t)
			found = found || name == bin
		}
		if !found {
			return nil, fmt.Errorf("%s %s: no -test binary of that name", flagName, bin)
		}
	}
	return out, nil
}

// moduleRoot finds the folder of go.mod from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod in %s or above: run vmtest inside the module", dir)
		}
	}
}
