package tcpconnectreceiver

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join(goldenDir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	custom := createDefaultConfig()
	custom.Attach = "cgroup"
	custom.CgroupPath = "/sys/fs/cgroup/unified"
	custom.RingBufferSize = 16 << 20
	custom.PollInterval = 50 * time.Millisecond
	custom.Batch = BatchConfig{MaxSize: 256, Timeout: time.Second, MaxBytes: 1 << 20}
	custom.ExcludeSelf = false
	custom.IncludeCommandLine = true
	custom.MaxCommandLineBytes = 8192
	custom.Retry = RetryConfig{Enabled: true, InitialInterval: 100 * time.Millisecond, MaxInterval: 2 * time.Second, MaxElapsedTime: time.Minute}
	custom.ShutdownTimeout = 3 * time.Second
	custom.DNS.Enabled = true
	custom.DNS.MaxEntries = 1000
	custom.DNS.MinTTL = time.Second
	custom.DNS.CrossNamespace = "public_only"
	custom.DNS.StateFile = "/var/lib/otelcol/tcpconnect-dns.state"
	custom.DNS.StateInterval = 30 * time.Second
	custom.Filter = FilterConfig{
		IncludeCIDRs:     []string{"10.0.0.0/8", "2001:db8::/32"},
		ExcludeCIDRs:     []string{"10.9.9.9"},
		ExcludePorts:     []int{22},
		ExcludeLoopback:  true,
		ExcludeProcesses: []string{"chronyd"},
	}
	custom.Outcome = OutcomeConfig{Enabled: true, MaxWait: 250 * time.Millisecond, MaxWaiting: 1024}

	tests := []struct {
		id      component.ID
		want    *Config
		wantErr []string
	}{
		{component.NewID(metadata.Type), createDefaultConfig(), nil},
		{component.NewIDWithName(metadata.Type, "custom"), custom, nil},
		{component.NewIDWithName(metadata.Type, "invalid"), nil, []string{"attach:", "ring_buffer_size:", "batch.max_size:", "max_command_line_bytes:",
			"filter.include_cidrs:", "filter.exclude_ports:", "filter.exclude_processes:", "dns.max_ttl:", "dns.cross_namespace:", "dns.state_file:", "outcome.max_wait:"}},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			cfg := NewFactory().CreateDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			if err != nil {
				t.Fatal(err)
			}
			if err := sub.Unmarshal(cfg); err != nil {
				t.Fatal(err)
			}
			err = confmap.Validate(cfg)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("Validate passed, want errors")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg, tt.want) {
				t.Errorf("config = %+v, want %+v", cfg, tt.want)
			}
		})
	}
}

// TestUnknownKeyNamesComponent checks that a misspelt key fails with the
// component's name (the package's) and the key, so an operator knows where
// to look.
func TestUnknownKeyNamesComponent(t *testing.T) {
	cfg := NewFactory().CreateDefaultConfig()
	err := confmap.NewFromStringMap(map[string]any{"ring_bufer_size": 1}).Unmarshal(cfg)
	want := "'tcpconnectreceiver.Config' has invalid keys: ring_bufer_size"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Unmarshal error = %v, want it to contain %q", err, want)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // "" for valid
	}{
		{"default", func(*Config) {}, ""},
		{"every mode", func(c *Config) { c.Attach = "kprobe" }, ""},
		{"unknown mode", func(c *Config) { c.Attach = "x" }, `attach: unknown attach mode "x" (want auto, lsm, fentry, kprobe or cgroup)`},
		{"empty mode", func(c *Config) { c.Attach = "" }, `attach: unknown attach mode ""`},
		{"ring not power of two", func(c *Config) { c.RingBufferSize = 3 << 20 }, "ring_buffer_size: must be a power of two"},
		{"ring below a page", func(c *Config) { c.RingBufferSize = 1024 }, "ring_buffer_size: must be a power of two"},
		{"ring too large", func(c *Config) { c.RingBufferSize = 1 << 31 }, "ring_buffer_size: must be a power of two"},
		{"poll zero", func(c *Config) { c.PollInterval = 0 }, "poll_interval: must be between 1ms and 1m"},
		{"batch size zero", func(c *Config) { c.Batch.MaxSize = 0 }, "batch.max_size: must be between 1 and"},
		{"batch timeout zero", func(c *Config) { c.Batch.Timeout = 0 }, "batch.timeout: must be positive"},
		{"retry initial zero", func(c *Config) { c.Retry.InitialInterval = 0 }, "retry.initial_interval: must be positive"},
		{"retry max below initial", func(c *Config) { c.Retry.MaxInterval = time.Millisecond }, "retry.max_interval: must be at least retry.initial_interval"},
		{"retry unbounded", func(c *Config) { c.Retry.MaxElapsedTime = 0 }, "retry.max_elapsed_time: must be positive"},
		{"retry disabled ignores its fields", func(c *Config) { c.Retry = RetryConfig{} }, ""},
		{"shutdown timeout zero", func(c *Config) { c.ShutdownTimeout = 0 }, "shutdown_timeout: must be positive and at most 1m0s, got 0s"},
		{"shutdown timeout too long", func(c *Config) { c.ShutdownTimeout = 2 * time.Minute }, "shutdown_timeout: must be positive and at most 1m0s"},
		{"command line cap zero", func(c *Config) { c.MaxCommandLineBytes = 0 }, "max_command_line_bytes: must be between 64 and 1048576, got 0"},
		{"command line cap too large", func(c *Config) { c.MaxCommandLineBytes = 2 << 20 }, "max_command_line_bytes: must be between 64 and 1048576"},
		{"command line cap largest", func(c *Config) { c.MaxCommandLineBytes = 1 << 20; c.IncludeCommandLine = true }, ""},
		{"batch bytes zero", func(c *Config) { c.Batch.MaxBytes = 0 }, "batch.max_bytes: must be between 1 and"},
		{"batch bytes below one record", func(c *Config) { c.Batch.MaxBytes = 20000 }, "batch.max_bytes: must hold the largest record"},
		{"batch bytes below one record with its command line", func(c *Config) {
			c.IncludeCommandLine, c.MaxCommandLineBytes, c.Batch.MaxBytes = true, 1<<20, 1<<20
		}, "batch.max_bytes: must hold the largest record"},
		{"batch bytes hold a command line left out", func(c *Config) { c.MaxCommandLineBytes, c.Batch.MaxBytes = 1<<20, 1<<20 }, ""},
		{"ring size other than the default", func(c *Config) { c.RingBufferSize = 1 << 20 }, ""},
		{"include cidrs at the map size", func(c *Config) { c.Filter.IncludeCIDRs = cidrs(bpf.MaxFilterCIDRs) }, ""},
		{"include cidrs over the map size", func(c *Config) { c.Filter.IncludeCIDRs = cidrs(bpf.MaxFilterCIDRs + 1) },
			fmt.Sprintf("filter.include_cidrs: %d distinct prefixes, the kernel map holds at most %d", bpf.MaxFilterCIDRs+1, bpf.MaxFilterCIDRs)},
		{"duplicate prefixes count once", func(c *Config) {
			c.Filter.ExcludeCIDRs = append(cidrs(bpf.MaxFilterCIDRs), "10.0.0.1", "10.0.0.2/32")
		}, ""},
		{"exclude cidrs with loopback over the map size", func(c *Config) {
			c.Filter.ExcludeCIDRs = cidrs(bpf.MaxFilterCIDRs - 1)
			c.Filter.ExcludeLoopback = true
		}, "filter.exclude_cidrs (with exclude_loopback's 2): 1025 distinct prefixes, the kernel map holds at most 1024"},
		{"ports together over the map size", func(c *Config) {
			c.Filter.IncludePorts = ports(1, bpf.MaxFilterPorts/2)
			c.Filter.ExcludePorts = ports(30000, bpf.MaxFilterPorts/2+1)
		}, "filter.include_ports and filter.exclude_ports: 1025 distinct ports together, the kernel map holds at most 1024"},
		{"processes together over the map size", func(c *Config) {
			c.Filter.IncludeProcesses = procs("i", bpf.MaxFilterProcesses)
			c.Filter.ExcludeProcesses = procs("e", 1)
		}, "filter.include_processes and filter.exclude_processes: 1025 distinct names together, the kernel map holds at most 1024"},
		{"process name of 15 bytes", func(c *Config) { c.Filter.ExcludeProcesses = []string{"123456789012345"} }, ""},
		{"process name over 15 bytes", func(c *Config) { c.Filter.IncludeProcesses = []string{"1234567890123456"} },
			`filter.include_processes: process name "1234567890123456" must be 1 to 15 bytes`},
		{"process name with NUL", func(c *Config) { c.Filter.ExcludeProcesses = []string{"a\x00b"} },
			`filter.exclude_processes: process name "a\x00b" must be 1 to 15 bytes without NUL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			tt.mod(cfg)
			wantErr(t, "Validate", confmap.Validate(cfg), tt.wantErr)
		})
	}
}

// wantErr fails t unless err is nil where want is "", or contains want.
func wantErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: %v, want nil", what, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%s: %v, want an error containing %q", what, err, want)
	}
}

// cidrs returns n distinct /32 prefixes in 10.0.0.0/8.
func cidrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.%d.%d.%d/32", i>>16&0xff, i>>8&0xff, i&0xff)
	}
	return out
}

// ports returns n consecutive ports from first.
func ports(first, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = first + i
	}
	return out
}

// procs returns n distinct process names with prefix.
func procs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

// TestOpenErrorsNameTheField checks the start-up errors that come from a
// field the host judges: they name the field.
func TestOpenErrorsNameTheField(t *testing.T) {
	cgroup, _ := bpf.CgroupV2Mount()
	tests := []struct {
		name    string
		mod     func(*Config)
		openErr error // what bpf.Open failed with; nil: checkHost alone
		wantErr string
	}{
		{"cgroup_path missing", func(c *Config) { c.CgroupPath = "/nonexistent/cgroup" }, nil, "cgroup_path: no such file or directory"},
		{"cgroup_path not cgroup2", func(c *Config) { c.CgroupPath = t.TempDir() }, nil, "is not a cgroup v2 (cgroup2) directory"},
		{"cgroup_path cgroup2", func(c *Config) { c.CgroupPath = cgroup }, nil, ""},
		{"cgroup_path empty", func(c *Config) { c.CgroupPath = "" }, nil, ""},
		{"ring refused", func(c *Config) { c.RingBufferSize = 1 << 30 },
			fmt.Errorf("attach mode cgroup: load programs: map create: %w", unix.ENOMEM), "ring_buffer_size: the kernel could not allocate 1073741824 bytes"},
		{"other errors unchanged", func(*Config) {}, unix.EPERM, unix.EPERM.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "cgroup_path cgroup2" && cgroup == "" {
				privtest.SkipOrFail(t, "no cgroup2 mount here")
			}
			cfg := createDefaultConfig()
			tt.mod(cfg)
			var err error
			if tt.openErr != nil {
				err = cfg.openError(tt.openErr)
			} else {
				err = cfg.checkHost()
			}
			wantErr(t, "err", err, tt.wantErr)
			if tt.openErr != nil && !errors.Is(err, tt.openErr) {
				t.Errorf("err = %v does not wrap %v", err, tt.openErr)
			}
		})
	}
}
