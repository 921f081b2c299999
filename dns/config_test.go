package dns

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   []string // substrings of the error; none: valid
	}{
		{name: "default", change: func(*Config) {}},
		{name: "disabled ignores the rest", change: func(c *Config) { c.Enabled = false; c.MaxEntries = -1 }},
		{name: "zero TTL floor", change: func(c *Config) { c.MinTTL = 0 }},
		{name: "max_entries zero", change: func(c *Config) { c.MaxEntries = 0 }, want: []string{"dns.max_entries: must be between 1 and"}},
		{name: "max_entries huge", change: func(c *Config) { c.MaxEntries = MaxMaxEntries + 1 }, want: []string{"dns.max_entries"}},
		{name: "max_names_per_ip zero", change: func(c *Config) { c.MaxNamesPerIP = 0 }, want: []string{"dns.max_names_per_ip: must be between 1 and 64, got 0"}},
		{name: "negative min_ttl", change: func(c *Config) { c.MinTTL = -time.Second }, want: []string{"dns.min_ttl: must not be negative"}},
		{name: "zero max_ttl", change: func(c *Config) { c.MaxTTL = 0 }, want: []string{"dns.max_ttl: must be positive"}},
		{name: "max below min", change: func(c *Config) { c.MinTTL = time.Minute; c.MaxTTL = time.Second },
			want: []string{"dns.max_ttl: must be >= dns.min_ttl, got 1s < 1m0s"}},
		{name: "cross_namespace public_only", change: func(c *Config) { c.CrossNamespace = CrossNamespacePublicOnly }},
		{name: "cross_namespace empty", change: func(c *Config) { c.CrossNamespace = "" }},
		{name: "cross_namespace unknown", change: func(c *Config) { c.CrossNamespace = "all" },
			want: []string{`dns.cross_namespace: must be "none" or "public_only", got "all"`}},
		{name: "state_file absolute", change: func(c *Config) { c.StateFile = "/var/lib/tcpconnect/dns.state" }},
		{name: "state_file relative", change: func(c *Config) { c.StateFile = "dns.state" },
			want: []string{`dns.state_file: must be an absolute file path, got "dns.state"`}},
		{name: "state_file a directory", change: func(c *Config) { c.StateFile = "/var/lib/" },
			want: []string{"dns.state_file: must be an absolute file path"}},
		{name: "state_interval too short", change: func(c *Config) { c.StateFile = "/x"; c.StateInterval = time.Millisecond },
			want: []string{"dns.state_interval: must be at least 1s, got 1ms"}},
		{name: "state_interval unused without state_file", change: func(c *Config) { c.StateInterval = 0 }},
		{name: "every error reported", change: func(c *Config) { c.MaxEntries = 0; c.MaxNamesPerIP = 0 },
			want: []string{"dns.max_entries", "dns.max_names_per_ip"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	want := Config{Enabled: true, MaxEntries: 65536, MaxNamesPerIP: 8, MinTTL: 5 * time.Second, MaxTTL: time.Hour, CrossNamespace: "none",
		StateInterval: time.Minute}
	if got := DefaultConfig(); got != want {
		t.Fatalf("DefaultConfig() = %+v, want %+v", got, want)
	}
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "dns.max_entries") {
		t.Fatalf("New(zero config) = %v, want a max_entries error", err)
	}
}
