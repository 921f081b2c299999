package vmtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/vmtest/guest"
)

// GuestInitPackage is the package built as the guest /init.
const GuestInitPackage = "github.com/tcpconnect/tcpconnect/internal/vmtest/guestinit"

// Runner boots plans in qemu.
type Runner struct {
	// ModuleRoot is the folder holding go.mod; the guest /init is built there.
	ModuleRoot string
	// CacheDir holds the kernel packages; ModuleRoot/.cache/vm when empty.
	CacheDir string
	// Out receives the guest console, each line prefixed with the kernel
	// name, and progress messages; os.Stdout when nil.
	Out io.Writer
}

// Status of one command on one kernel.
type Status string

// Command statuses.
const (
	Pass    Status = "PASS"
	Fail    Status = "FAIL"
	Missing Status = "MISSING" // no result line: the guest died, hung or lost it
)

// CommandResult is one command's outcome on one kernel.
type CommandResult struct {
	Name    string
	Status  Status
	Exit    int
	Seconds float64
	// Failures is the output of the Go tests that failed (testLog), for
	// a command that failed; at most MaxFailureLines lines.
	Failures []string
}

// KernelReport is one kernel's boot.
type KernelReport struct {
	Kernel  Kernel
	Release string
	// Cmdline is what the plan added to the kernel command line.
	Cmdline string
	// Wall is the time from starting qemu to its exit.
	Wall time.Duration
	// Results has one entry per plan command, in plan order.
	Results []CommandResult
	// Errors are failures of the boot as a whole: qemu's exit, a kernel
	// panic, the timeout, a guest setup error, a missing done line.
	Errors []string
	// ConsoleTail is the end of the guest console (at most ConsoleTailLines
	// lines) when the boot failed, so that a panic's trace or a failing
	// test's output is in the summary, which is all a CI log's tail shows.
	ConsoleTail []string
}

// ConsoleTailLines bounds KernelReport.ConsoleTail.
const ConsoleTailLines = 80

// OK reports whether the boot finished cleanly and every command passed.
func (r *KernelReport) OK() bool {
	if len(r.Errors) > 0 || len(r.Results) == 0 {
		return false
	}
	for _, c := range r.Results {
		if c.Status != Pass {
			return false
		}
	}
	return true
}

// Run boots each of the plan's kernels once, running all its commands, and
// returns one report per kernel. The error is for failures before a boot
// (fetching, building); a failed boot or command is in the reports.
func (r *Runner) Run(ctx context.Context, plan *Plan) ([]KernelReport, error) {
	if err := plan.Validate(); err != nil {
		return nil, fmt.Errorf("invalid plan: %w", err)
	}
	p := plan.withDefaults()
	kernels, err := SelectKernels(p.Kernels)
	if err != nil {
		return nil, err
	}
	out := r.Out
	if out == nil {
		out = os.Stdout
	}
	cacheDir := r.CacheDir
	if cacheDir == "" {
		cacheDir = filepath.Join(r.ModuleRoot, ".cache", "vm")
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	work, err := os.MkdirTemp(cacheDir, "run-")
	if err != nil {
		return nil, fmt.Errorf("create work folder: %w", err)
	}
	defer os.RemoveAll(work)
	tools := map[string]*archTools{}
	for _, k := range kernels {
		if tools[k.arch()] != nil {
			continue
		}
		at, err := r.prepareArch(ctx, cacheDir, work, k.arch(), !p.NoBusybox)
		if err != nil {
			return nil, err
		}
		for _, f := range p.Files {
			if f.Host == "" {
				continue
			}
			if err := checkBinary(f.Host, k.arch()); err != nil {
				return nil, fmt.Errorf("kernel %s: %w", k.Name, err)
			}
		}
		tools[k.arch()] = at
	}
	var reports []KernelReport
	for _, k := range kernels {
		at := tools[k.arch()]
		fmt.Fprintf(out, "vmtest: [%s] fetching %s\n", k.Name, k.debSpec())
		img, err := Fetch(ctx, cacheDir, k)
		if err != nil {
			return reports, err
		}
		mods, err := ResolveModules(ctx, img.ModulesDir, p.Modules)
		if err != nil {
			return reports, fmt.Errorf("kernel %s: %w", k.Name, err)
		}
		nonce, err := newNonce()
		if err != nil {
			return reports, err
		}
		initrd := filepath.Join(work, "initramfs-"+k.Name+".cpio")
		spec := initramfsSpec{
			Init:    at.init,
			Plan:    guest.Plan{Nonce: nonce, Kernel: k.Name, Env: p.Env, Commands: p.Commands},
			Modules: mods,
			Files:   p.Files,
			Busybox: at.busybox,
			Arch:    k.arch(),
		}
		if err := writeInitramfs(ctx, initrd, spec); err != nil {
			return reports, fmt.Errorf("kernel %s: %w", k.Name, err)
		}
		rep := boot(ctx, out, bootConfig{qemu: at.qemu, img: img, initrd: initrd, nonce: nonce, plan: &p})
		reports = append(reports, rep)
		if err := os.Remove(initrd); err != nil {
			return reports, fmt.Errorf("remove initramfs: %w", err)
		}
	}
	return reports, nil
}

// archTools are the host-side pieces for booting one guest architecture.
type archTools struct {
	qemu    string // qemu system emulator
	init    string // the guest /init, built for the architecture
	busybox string // a static busybox of the architecture, or ""
}

// prepareArch finds (or installs) qemu and busybox for arch and builds the
// guest /init for it into work.
func (r *Runner) prepareArch(ctx context.Context, cacheDir, work, arch string, busybox bool) (*archTools, error) {
	qemu, err := EnsureQEMU(ctx, arch)
	if err != nil {
		return nil, err
	}
	at := &archTools{qemu: qemu, init: filepath.Join(work, "init-"+arch)}
	if busybox {
		if at.busybox, err = FindBusybox(ctx, cacheDir, arch); err != nil {
			return nil, err
		}
	}
	if err := r.buildInit(ctx, at.init, arch); err != nil {
		return nil, err
	}
	return at, nil
}

func (r *Runner) buildInit(ctx context.Context, dst, arch string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", dst, GuestInitPackage)
	cmd.Dir = r.ModuleRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build guest init %s for %s: %w: %s", GuestInitPackage, arch, err, strings.TrimSpace(string(b)))
	}
	return nil
}

func newNonce() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	return hex.EncodeToString(b), nil
}

type bootConfig struct {
	qemu   string
	img    *Image
	initrd string
	nonce  string
	plan   *Plan
}

// QEMUArgs returns the qemu arguments for one boot of an arch guest, with
// cmdline added to the kernel command line. /dev/kvm hangs on this kind of
// machine (nested virtualisation), so it is TCG; arm64 is the "virt" board,
// whose console is the PL011 UART (ttyAMA0). pauth-impdef=on swaps the
// architected pointer-authentication hash (QARMA, very slow to emulate) for
// qemu's own: the guest cannot tell, and TCG runs several times faster.
// amd64 guests run single-threaded TCG (thread=single: the vCPUs take turns
// on one host thread): under multi-threaded TCG a 6.12 guest twice died of
// "Oops: int3" in ip_finish_output while a cgroup BPF static key was being
// switched (x86 patches live code through a temporary int3, and another
// vCPU ran the stale int3 after the patch had completed), which real CPUs
// do not allow. arm64 patches branches without that trick. make vmtest runs
// two boots at a time, so the cores stay busy all the same.
func QEMUArgs(arch, vmlinuz, initrd string, memoryMB, cpus int, cmdline string) []string {
	var args []string
	console := "ttyS0"
	switch arch {
	case ArchARM64:
		args = []string{"-machine", "virt", "-accel", "tcg", "-cpu", "max,pauth-impdef=on"}
		console = "ttyAMA0"
	default:
		args = []string{"-accel", "tcg,thread=single", "-cpu", "max"}
	}
	return append(args,
		"-m", strconv.Itoa(memoryMB), "-smp", strconv.Itoa(cpus),
		"-nographic", "-no-reboot", "-nic", "none",
		"-kernel", vmlinuz, "-initrd", initrd,
		"-append", strings.TrimSpace("console="+console+" quiet panic=-1 "+cmdline),
	)
}

func boot(ctx context.Context, out io.Writer, bc bootConfig) KernelReport {
	k := bc.img.Kernel
	rep := KernelReport{Kernel: k, Release: bc.img.Release, Cmdline: bc.plan.Cmdline}
	timeout := time.Duration(bc.plan.Timeout)
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cmd := exec.CommandContext(tctx, bc.qemu, QEMUArgs(bc.img.Kernel.arch(), bc.img.Vmlinuz, bc.initrd, bc.plan.MemoryMB, bc.plan.CPUs, bc.plan.Cmdline)...)
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		rep.Errors = append(rep.Errors, fmt.Sprintf("qemu stdout: %v", err))
		return rep
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		rep.Errors = append(rep.Errors, fmt.Sprintf("qemu stderr: %v", err))
		return rep
	}
	fmt.Fprintf(out, "vmtest: [%s] booting %s (%s) %s with %d commands (timeout %s)\n", k.Name, bc.img.Release, k.arch(), bc.plan.Cmdline, len(bc.plan.Commands), timeout)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		rep.Errors = append(rep.Errors, fmt.Sprintf("start qemu: %v", err))
		return rep
	}
	var (
		mu      sync.Mutex // serialises writes to out
		wg      sync.WaitGroup
		console = newConsole(bc.nonce)
		errTail []string
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		forEachLine(stdout, func(line string) {
			mu.Lock()
			fmt.Fprintf(out, "[%s] %s\n", k.Name, line)
			mu.Unlock()
			console.feed(line)
		})
	}()
	go func() {
		defer wg.Done()
		forEachLine(stderr, func(line string) {
			mu.Lock()
			fmt.Fprintf(out, "[%s qemu] %s\n", k.Name, line)
			mu.Unlock()
			if len(errTail) < 20 {
				errTail = append(errTail, line)
			}
		})
	}()
	wg.Wait()
	waitErr := cmd.Wait()
	rep.Wall = time.Since(start)

	switch {
	case errors.Is(tctx.Err(), context.DeadlineExceeded):
		rep.Errors = append(rep.Errors, fmt.Sprintf("timeout after %s", timeout))
	case ctx.Err() != nil:
		rep.Errors = append(rep.Errors, fmt.Sprintf("interrupted: %v", ctx.Err()))
	case waitErr != nil:
		rep.Errors = append(rep.Errors, fmt.Sprintf("qemu failed: %v: %s", waitErr, strings.Join(errTail, " | ")))
	}
	rep.Results, rep.Errors = console.verdict(bc.plan.Commands, rep.Errors)
	if !rep.OK() {
		rep.ConsoleTail = console.lastLines()
	}
	return rep
}

// ansiEscape matches the terminal control sequences that SeaBIOS and qemu
// print (reset, clear screen), which would garble logs.
var ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[@-~]|[@-Z\\-_c])`)

// forEachLine calls fn for each line of r, without the line end and without
// terminal control sequences.
func forEachLine(r io.Reader, fn func(string)) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			fn(ansiEscape.ReplaceAllString(strings.TrimRight(line, "\r\n"), ""))
		}
		if err != nil {
			return
		}
	}
}

// console collects what the guest reported on the serial console.
type console struct {
	nonce   string
	results map[string]guest.Result
	// tests are the top-level Go test verdicts ("--- PASS: Name") printed
	// since the last result line, so by the command running now; byCmd
	// keeps them per command once its result line came.
	tests map[string]string
	byCmd map[string]map[string]string
	// log is the output since the last result line, by Go test; failOut
	// keeps the failed tests' part of it per failed command.
	log     *testLog
	failOut map[string][]string
	done    bool
	panic   bool
	errs    []string
	// tail is a ring of the last ConsoleTailLines lines; next is where
	// the next line goes once it is full.
	tail []string
	next int
}

// keep adds line to the ring of the console's last lines.
func (c *console) keep(line string) {
	if len(c.tail) < ConsoleTailLines {
		c.tail = append(c.tail, line)
		return
	}
	c.tail[c.next] = line
	c.next = (c.next + 1) % ConsoleTailLines
}

// lastLines returns the kept lines, oldest first.
func (c *console) lastLines() []string {
	out := make([]string, 0, len(c.tail))
	out = append(out, c.tail[c.next:]...)
	return append(out, c.tail[:c.next]...)
}

func newConsole(nonce string) *console {
	return &console{nonce: nonce, results: map[string]guest.Result{}, tests: map[string]string{}, byCmd: map[string]map[string]string{},
		log: newTestLog(), failOut: map[string][]string{}}
}

// goTestVerdict matches the line "go test -v" prints for a top-level test
// (subtests are indented).
var goTestVerdict = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+) \(`)

// feed looks at one console line.
func (c *console) feed(line string) {
	c.keep(line)
	if msg, ok := PanicText(line); ok {
		if !c.panic { // the panic's closing "---[ end Kernel panic" line repeats it
			c.errs = append(c.errs, "kernel panic: "+msg)
		}
		c.panic = true
		return
	}
	if m := goTestVerdict.FindStringSubmatch(line); m != nil {
		c.tests[m[2]] = m[1]
	}
	l, ok, err := guest.ParseLine(c.nonce, line)
	if err == nil && !ok {
		c.log.feed(line)
	}
	switch {
	case err != nil:
		c.errs = append(c.errs, err.Error())
	case !ok:
	case l.Kind == guest.DoneMarker:
		c.done = true
	case l.Kind == guest.ErrorMarker:
		c.errs = append(c.errs, "guest setup failed: "+l.Message)
	case l.Kind == guest.ResultMarker:
		if _, dup := c.results[l.Result.Name]; dup {
			c.errs = append(c.errs, "duplicate result for "+l.Result.Name)
		}
		c.results[l.Result.Name] = l.Result
		if l.Result.Exit != 0 || len(c.log.failed) > 0 {
			c.failOut[l.Result.Name] = c.log.failures(MaxFailureLines)
		}
		c.byCmd[l.Result.Name], c.tests = c.tests, map[string]string{}
		c.log = newTestLog()
	}
}

// verdict matches the results against the plan's commands: every command
// needs its result line, and the guest must have printed its done line.
func (c *console) verdict(cmds []guest.Command, errs []string) ([]CommandResult, []string) {
	errs = append(errs, c.errs...)
	out := make([]CommandResult, 0, len(cmds))
	for _, cmd := range cmds {
		r, ok := c.results[cmd.Name]
		switch {
		case !ok:
			out = append(out, CommandResult{Name: cmd.Name, Status: Missing, Exit: -1})
		case r.Exit != 0:
			out = append(out, CommandResult{Name: cmd.Name, Status: Fail, Exit: r.Exit, Seconds: r.Seconds, Failures: c.failOut[cmd.Name]})
		case !c.ranWanted(cmd, &errs):
			out = append(out, CommandResult{Name: cmd.Name, Status: Fail, Exit: r.Exit, Seconds: r.Seconds, Failures: c.failOut[cmd.Name]})
		default:
			out = append(out, CommandResult{Name: cmd.Name, Status: Pass, Seconds: r.Seconds})
		}
		delete(c.results, cmd.Name)
	}
	for name := range c.results {
		errs = append(errs, "result for a command not in the plan: "+name)
	}
	if !c.done {
		errs = append(errs, "the guest did not print its done line")
	}
	return out, errs
}

// ranWanted reports whether every test that cmd wants printed PASS, adding
// an error for each that did not.
func (c *console) ranWanted(cmd guest.Command, errs *[]string) bool {
	ok := true
	for _, name := range cmd.WantTests {
		if v := c.byCmd[cmd.Name][name]; v != "PASS" {
			if v == "" {
				v = "did not run"
			}
			*errs = append(*errs, fmt.Sprintf("%s: %s: %s", cmd.Name, name, v))
			ok = false
		}
	}
	return ok
}

// PanicText reports whether a console line shows a kernel panic, and the
// panic message.
func PanicText(line string) (string, bool) {
	const marker = "Kernel panic - not syncing"
	i := strings.Index(line, marker)
	if i < 0 {
		return "", false
	}
	return strings.TrimSpace(strings.TrimPrefix(line[i+len(marker):], ":")), true
}
