package tcpconnectreceiver

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/collector/confmap"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
)

// Defaults of Config.
const (
	defaultRingBufferSize  = 8 << 20
	defaultPollInterval    = 100 * time.Millisecond
	defaultBatchMaxSize    = 1024
	defaultBatchTimeout    = 200 * time.Millisecond
	defaultRetryInitial    = time.Second
	defaultRetryMax        = 30 * time.Second
	defaultRetryMaxElapsed = 5 * time.Minute
	defaultShutdownTimeout = 5 * time.Second

	maxShutdownTimeout = time.Minute

	// defaultOutcomeMaxWait: see OutcomeConfig.MaxWait.
	defaultOutcomeMaxWait    = 500 * time.Millisecond
	defaultOutcomeMaxWaiting = 8192
	maxOutcomeWait           = 10 * time.Second
	maxOutcomeWaiting        = 1 << 20

	maxRingBufferSize = 1 << 30
	maxBatchSize      = 1 << 20
)

// Config is the tcpconnect receiver's configuration.
type Config struct {
	// Attach is the attach mode of the connect hook: auto, lsm, fentry,
	// kprobe or cgroup. auto tries them in that order.
	Attach string `mapstructure:"attach"`
	// CgroupPath is the cgroup v2 directory the cgroup programs attach to
	// (attach mode cgroup, DNS capture). Empty: the first cgroup2 mount that
	// shows the host's whole hierarchy, or one mounted privately when none
	// is mounted; an error names the mount to add when only a container's
	// own subtree is visible.
	CgroupPath string `mapstructure:"cgroup_path"`
	// ProcPath is the procfs of the host's PID namespace, whose pids the
	// kernel's records carry: /proc on the host or with host PID, else the
	// host's /proc mounted into the container (e.g. /host/proc). When it
	// shows another PID namespace, /proc is not read (a logged degradation).
	ProcPath string `mapstructure:"proc_path"`
	// RingBufferSize is the kernel ring buffer's size in bytes: a power of two
	// and at least a page. A connect record takes 160 bytes in the ring, a DNS
	// record 1624: the default 8 MiB holds about 50,000 connects.
	RingBufferSize int `mapstructure:"ring_buffer_size"`
	// PollInterval is how often the reader drains the ring when the kernel
	// sent no wakeup (it wakes the reader only when a quarter of the ring is
	// full). It bounds the latency of a quiet host's records.
	PollInterval time.Duration `mapstructure:"poll_interval"`
	// Batch bounds how many records a ConsumeLogs call carries and how long
	// a record waits for its batch.
	Batch BatchConfig `mapstructure:"batch"`
	// ExcludeSelf leaves the collector's own connects (its exporters) out, in
	// the kernel.
	ExcludeSelf bool `mapstructure:"exclude_self"`
	// IncludeCommandLine adds process.command_line (/proc/PID/cmdline). Off
	// by default: command lines may carry secrets.
	IncludeCommandLine bool `mapstructure:"include_command_line"`
	// MaxCommandLineBytes caps process.command_line: a longer one is cut on
	// a UTF-8 boundary and ends in "…" (procinfo.TruncationMarker). Any
	// process can make its command line megabytes long.
	MaxCommandLineBytes int `mapstructure:"max_command_line_bytes"`
	// Retry bounds the retries of ConsumeLogs after non-permanent errors.
	Retry RetryConfig `mapstructure:"retry"`
	// ShutdownTimeout bounds Shutdown: retries stop when it starts, the last
	// batches get one attempt each, and what is not delivered when the bound
	// passes is dropped and counted. Keep it below the orchestrator's grace
	// period (Kubernetes terminationGracePeriodSeconds, podman stop -t).
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// DNS configures DNS capture and name correlation (package dns).
	DNS dns.Config `mapstructure:"dns"`
	// Filter leaves connects out in the kernel, before they cost anything in
	// user space. Filtered connects are counted, not lost.
	Filter FilterConfig `mapstructure:"filter"`
	// Outcome puts the connect's outcome and handshake time on its record.
	Outcome OutcomeConfig `mapstructure:"outcome"`
	// Aggregation counts repeated connects in the kernel and reports them
	// once per window (opt-in; aggregate.go).
	Aggregation AggregationConfig `mapstructure:"aggregation"`
	// FirstBytes names connects by what their client sends first (TLS
	// server name, HTTP Host); it needs outcome.enabled.
	FirstBytes FirstBytesConfig `mapstructure:"first_bytes"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// BatchConfig bounds the batches handed to the next consumer.
type BatchConfig struct {
	// MaxSize is the most log records in one batch.
	MaxSize int `mapstructure:"max_size"`
	// Timeout is the longest a record waits before its batch is sent.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxBytes bounds a batch's OTLP (protobuf) size: a batch is sent
	// before the next record could take it past this. It must hold the
	// largest record the caps allow (see maxRecordBytes).
	MaxBytes int `mapstructure:"max_bytes"`
}

// RetryConfig is the bounded exponential backoff for non-permanent consumer
// errors. While a batch is retried the reader stops reading: the kernel ring
// then fills and counts what it cannot hold (receiver_tcpconnect_connects_lost).
type RetryConfig struct {
	// Enabled retries non-permanent errors; when false they drop the batch.
	Enabled bool `mapstructure:"enabled"`
	// InitialInterval is the wait before the first retry; it doubles after
	// each one.
	InitialInterval time.Duration `mapstructure:"initial_interval"`
	// MaxInterval caps the wait between retries.
	MaxInterval time.Duration `mapstructure:"max_interval"`
	// MaxElapsedTime is the retry budget of one batch; then it is dropped and
	// counted in receiver_tcpconnect_records_dropped.
	MaxElapsedTime time.Duration `mapstructure:"max_elapsed_time"`
}

// OutcomeConfig configures connect outcome tracking: the kernel follows each
// reported socket to its next TCP state, and the connect's record waits for
// that outcome (tcpconnect.outcome, error.type, tcpconnect.connect.duration).
type OutcomeConfig struct {
	// Enabled turns outcome tracking on, kernel side included. Off, records
	// carry no outcome attributes and go out without waiting.
	Enabled bool `mapstructure:"enabled"`
	// MaxWait is the longest a record waits for its outcome before it goes
	// out as pending. The default, 500ms, is far above a loopback or LAN
	// handshake (measured 50-130 us on loopback, refused and ICMP errors as
	// fast) and above one round trip on any terrestrial path, yet keeps a
	// record's way to the consumer (poll_interval + max_wait +
	// batch.timeout, 800ms with the defaults) within about a second.
	// Timeouts (tcp_syn_retries: about two minutes) always go out pending.
	MaxWait time.Duration `mapstructure:"max_wait"`
	// MaxWaiting bounds the records waiting at once (each holds one slot of
	// about 350 bytes, allocated at start); when full, the oldest waiting
	// record goes out as pending. It also sizes the kernel's map of the
	// sockets it follows, to at least 1024 per CPU.
	MaxWaiting int `mapstructure:"max_waiting"`
}

// FilterConfig selects connects in the kernel. An empty include list keeps
// everything; an exclude match always drops.
type FilterConfig struct {
	// IncludeCIDRs keeps only destinations in these prefixes (or addresses).
	IncludeCIDRs []string `mapstructure:"include_cidrs"`
	// ExcludeCIDRs drops destinations in these prefixes (or addresses).
	ExcludeCIDRs []string `mapstructure:"exclude_cidrs"`
	// IncludePorts keeps only these destination ports.
	IncludePorts []int `mapstructure:"include_ports"`
	// ExcludePorts drops these destination ports.
	ExcludePorts []int `mapstructure:"exclude_ports"`
	// ExcludeLoopback drops connects to 127.0.0.0/8 and ::1.
	ExcludeLoopback bool `mapstructure:"exclude_loopback"`
	// IncludeProcesses keeps only connects of these process names: the
	// comm of the process's main thread (thread-group leader), at most 15
	// bytes, as in /proc/PID/comm. A thread's own name does not count.
	IncludeProcesses []string `mapstructure:"include_processes"`
	// ExcludeProcesses drops connects of these process names.
	ExcludeProcesses []string `mapstructure:"exclude_processes"`
}

// toBPF converts the filter for the kernel, reporting every bad value with
// its field.
func (f *FilterConfig) toBPF() (bpf.Filter, error) {
	var out bpf.Filter
	var errs []error
	prefixes := func(field string, in []string, dst *[]netip.Prefix) {
		for _, v := range in {
			p, err := netip.ParsePrefix(v)
			if err != nil {
				a, aerr := netip.ParseAddr(v)
				if aerr != nil {
					errs = append(errs, fmt.Errorf("filter.%s: %q is neither a CIDR prefix nor an IP address", field, v))
					continue
				}
				p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			}
			*dst = append(*dst, p)
		}
	}
	ports := func(field string, in []int, dst *[]uint16) {
		for _, v := range in {
			if v < 1 || v > 65535 {
				errs = append(errs, fmt.Errorf("filter.%s: port %d is out of range 1-65535", field, v))
				continue
			}
			*dst = append(*dst, uint16(v))
		}
	}
	names := func(field string, in []string, dst *[]string) {
		for _, v := range in {
			if len(v) == 0 || len(v) > bpf.MaxProcessNameLen || strings.IndexByte(v, 0) >= 0 {
				errs = append(errs, fmt.Errorf("filter.%s: process name %q must be 1 to %d bytes without NUL (the kernel's comm)", field, v, bpf.MaxProcessNameLen))
				continue
			}
			*dst = append(*dst, v)
		}
	}
	prefixes("include_cidrs", f.IncludeCIDRs, &out.IncludeCIDRs)
	prefixes("exclude_cidrs", f.ExcludeCIDRs, &out.ExcludeCIDRs)
	if f.ExcludeLoopback {
		prefixes("exclude_loopback", []string{"127.0.0.0/8", "::1/128"}, &out.ExcludeCIDRs)
	}
	ports("include_ports", f.IncludePorts, &out.IncludePorts)
	ports("exclude_ports", f.ExcludePorts, &out.ExcludePorts)
	names("include_processes", f.IncludeProcesses, &out.IncludeComms)
	names("exclude_processes", f.ExcludeProcesses, &out.ExcludeComms)
	errs = append(errs, filterLimitErrors(&out, f.ExcludeLoopback)...)
	return out, errors.Join(errs...)
}

// filterLimitErrors reports the lists that do not fit the kernel's filter
// maps (bpf.MaxFilter*), counting distinct keys as the maps do: prefixes after
// masking, and ports or names in both the include and exclude lists once.
func filterLimitErrors(out *bpf.Filter, excludeLoopback bool) []error {
	var errs []error
	masked := func(ps []netip.Prefix) []netip.Prefix {
		m := make([]netip.Prefix, len(ps))
		for i, p := range ps {
			m[i] = p.Masked()
		}
		return m
	}
	if n := distinct(masked(out.IncludeCIDRs)); n > bpf.MaxFilterCIDRs {
		errs = append(errs, fmt.Errorf("filter.include_cidrs: %d distinct prefixes, the kernel map holds at most %d", n, bpf.MaxFilterCIDRs))
	}
	if n := distinct(masked(out.ExcludeCIDRs)); n > bpf.MaxFilterCIDRs {
		field := "filter.exclude_cidrs"
		if excludeLoopback {
			field += " (with exclude_loopback's 2)"
		}
		errs = append(errs, fmt.Errorf("%s: %d distinct prefixes, the kernel map holds at most %d", field, n, bpf.MaxFilterCIDRs))
	}
	if n := distinct(append(slices.Clone(out.IncludePorts), out.ExcludePorts...)); n > bpf.MaxFilterPorts {
		errs = append(errs, fmt.Errorf("filter.include_ports and filter.exclude_ports: %d distinct ports together, the kernel map holds at most %d", n, bpf.MaxFilterPorts))
	}
	if n := distinct(append(slices.Clone(out.IncludeComms), out.ExcludeComms...)); n > bpf.MaxFilterProcesses {
		errs = append(errs, fmt.Errorf("filter.include_processes and filter.exclude_processes: %d distinct names together, the kernel map holds at most %d", n, bpf.MaxFilterProcesses))
	}
	return errs
}

// distinct counts the distinct values of keys.
func distinct[K comparable](keys []K) int {
	seen := make(map[K]struct{}, len(keys))
	for _, k := range keys {
		seen[k] = struct{}{}
	}
	return len(seen)
}

var _ confmap.Validator = (*Config)(nil)

func createDefaultConfig() *Config {
	return &Config{
		Attach:         string(bpf.ModeAuto),
		ProcPath:       "/proc",
		RingBufferSize: defaultRingBufferSize,
		PollInterval:   defaultPollInterval,
		Batch:          BatchConfig{MaxSize: defaultBatchMaxSize, Timeout: defaultBatchTimeout, MaxBytes: defaultBatchMaxBytes},
		ExcludeSelf:    true,
		DNS:            dns.DefaultConfig(),
		Outcome: OutcomeConfig{
			Enabled:    true,
			MaxWait:    defaultOutcomeMaxWait,
			MaxWaiting: defaultOutcomeMaxWaiting,
		},
		Retry: RetryConfig{
			Enabled:         true,
			InitialInterval: defaultRetryInitial,
			MaxInterval:     defaultRetryMax,
			MaxElapsedTime:  defaultRetryMaxElapsed,
		},
		MaxCommandLineBytes: procinfo.DefaultMaxCommandLineBytes,
		ShutdownTimeout:     defaultShutdownTimeout,
		Aggregation:         defaultAggregationConfig(),
		FirstBytes:          defaultFirstBytesConfig(),
	}
}

// Validate reports every invalid field; each error names the field and why.
func (c *Config) Validate() error {
	var errs []error
	if _, err := bpf.ParseMode(c.Attach); err != nil {
		errs = append(errs, fmt.Errorf("attach: %w", err))
	}
	if !filepath.IsAbs(c.ProcPath) {
		errs = append(errs, fmt.Errorf("proc_path: must be an absolute path, got %q", c.ProcPath))
	}
	page := os.Getpagesize()
	if n := c.RingBufferSize; n < page || n > maxRingBufferSize || n&(n-1) != 0 {
		errs = append(errs, fmt.Errorf("ring_buffer_size: must be a power of two between %d (a page) and %d bytes, got %d", page, maxRingBufferSize, n))
	}
	if c.PollInterval < time.Millisecond || c.PollInterval > time.Minute {
		errs = append(errs, fmt.Errorf("poll_interval: must be between 1ms and 1m, got %s", c.PollInterval))
	}
	if c.Batch.MaxSize < 1 || c.Batch.MaxSize > maxBatchSize {
		errs = append(errs, fmt.Errorf("batch.max_size: must be between 1 and %d, got %d", maxBatchSize, c.Batch.MaxSize))
	}
	if c.Batch.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("batch.timeout: must be positive, got %s", c.Batch.Timeout))
	}
	if c.Retry.Enabled {
		if c.Retry.InitialInterval <= 0 {
			errs = append(errs, fmt.Errorf("retry.initial_interval: must be positive, got %s", c.Retry.InitialInterval))
		}
		if c.Retry.MaxInterval < c.Retry.InitialInterval {
			errs = append(errs, fmt.Errorf("retry.max_interval: must be at least retry.initial_interval (%s), got %s", c.Retry.InitialInterval, c.Retry.MaxInterval))
		}
		if c.Retry.MaxElapsedTime <= 0 {
			errs = append(errs, fmt.Errorf("retry.max_elapsed_time: must be positive (retries are bounded), got %s", c.Retry.MaxElapsedTime))
		}
	}
	if c.ShutdownTimeout <= 0 || c.ShutdownTimeout > maxShutdownTimeout {
		errs = append(errs, fmt.Errorf("shutdown_timeout: must be positive and at most %s, got %s", maxShutdownTimeout, c.ShutdownTimeout))
	}
	errs = append(errs, validateRecordBounds(c.recordCaps(), c.Batch.MaxBytes)...)
	if _, err := c.Filter.toBPF(); err != nil {
		errs = append(errs, err)
	}
	if c.Outcome.Enabled {
		if c.Outcome.MaxWait < time.Millisecond || c.Outcome.MaxWait > maxOutcomeWait {
			errs = append(errs, fmt.Errorf("outcome.max_wait: must be between 1ms and %s, got %s", maxOutcomeWait, c.Outcome.MaxWait))
		}
		if c.Outcome.MaxWaiting < 1 || c.Outcome.MaxWaiting > maxOutcomeWaiting {
			errs = append(errs, fmt.Errorf("outcome.max_waiting: must be between 1 and %d, got %d", maxOutcomeWaiting, c.Outcome.MaxWaiting))
		}
	}
	errs = append(errs, c.Aggregation.validate(c.PollInterval)...)
	errs = append(errs, c.FirstBytes.validate()...)
	// c.DNS validates itself: the collector's config walker calls its
	// Validate, and its errors name the dns.* field.
	return errors.Join(errs...)
}

// recordCaps returns what of c bounds a record's size.
func (c *Config) recordCaps() recordCaps {
	return recordCaps{commandLine: c.IncludeCommandLine, commandLineBytes: c.MaxCommandLineBytes, aggregation: c.Aggregation.Enabled}
}

// checkHost checks the fields that only the host can judge, before the eBPF
// programs load, so that their errors name the field: cgroup_path must be a
// cgroup v2 directory.
func (c *Config) checkHost() error {
	if c.CgroupPath == "" {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(c.CgroupPath, &st); err != nil {
		return fmt.Errorf("cgroup_path: %w", err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("cgroup_path: %q is not a cgroup v2 (cgroup2) directory (filesystem magic %#x)", c.CgroupPath, st.Type)
	}
	return nil
}

// openError names the field behind an error of bpf.Open where one is to
// blame: the kernel refusing the ring's memory is ring_buffer_size's.
func (c *Config) openError(err error) error {
	if errors.Is(err, unix.ENOMEM) {
		return fmt.Errorf("ring_buffer_size: the kernel could not allocate %d bytes for the ring (lower it or raise the memory limit): %w", c.RingBufferSize, err)
	}
	return err
}
