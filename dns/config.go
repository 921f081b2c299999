package dns

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Defaults and bounds of [Config].
const (
	// DefaultMaxEntries is the default number of (IP, scope) cache entries.
	// Memory grows with the names held: BenchmarkCacheMemory measures about
	// 165 bytes of heap per entry with 1-3 names shared between IPs, and
	// about 240 with 2 distinct names per entry (about 16 MB at 65536).
	DefaultMaxEntries = 65536
	// DefaultMaxNamesPerIP is the default number of names kept per IP and
	// scope, and returned per lookup.
	DefaultMaxNamesPerIP = 8
	// DefaultMinTTL is the default TTL floor. Answers with TTL 0 (or a few
	// seconds) are common behind load balancers; the connect that follows
	// the answer must still find the name.
	DefaultMinTTL = 5 * time.Second
	// DefaultMaxTTL is the default TTL cap. Entries are refreshed by every
	// new answer, so the cap only matters for names that are not resolved
	// again: one hour covers nscd's default positive cache time (3600 s),
	// whose hits produce no packet, and typical connection-pool and
	// application-cache reuse, while bounding how long a possibly stale
	// IP -> name association (cloud IPs are reassigned) is reported.
	// Memory does not depend on it: max_entries and LRU bound the cache.
	DefaultMaxTTL = time.Hour

	// CrossNamespaceNone keeps names in their network namespace: a connect
	// gets only names resolved in its own (the default).
	CrossNamespaceNone = "none"
	// CrossNamespacePublicOnly lets names resolved in other network
	// namespaces name public destinations ([IsPublic]), after the
	// connect's own namespace's names; never loopback, link-local or
	// private ones, which are different endpoints in each namespace.
	CrossNamespacePublicOnly = "public_only"

	// DefaultStateInterval is how often the state file is written, when
	// one is configured (and once more at shutdown).
	DefaultStateInterval = time.Minute
	// MinStateInterval is the shortest accepted state_interval.
	MinStateInterval = time.Second

	// MaxMaxEntries is the largest accepted max_entries.
	MaxMaxEntries = 1 << 24
	// MaxMaxNamesPerIP is the largest accepted max_names_per_ip.
	MaxMaxNamesPerIP = 64
)

// Config configures the DNS correlator. The receiver embeds it under the
// key "dns".
type Config struct {
	// Enabled turns DNS capture and correlation on.
	Enabled bool `mapstructure:"enabled"`
	// MaxEntries bounds the cache's (IP, scope) entries; the least recently
	// used entry is evicted when a new one does not fit.
	MaxEntries int `mapstructure:"max_entries"`
	// MaxNamesPerIP bounds the names kept per IP and scope, and the names
	// returned by one lookup.
	MaxNamesPerIP int `mapstructure:"max_names_per_ip"`
	// MinTTL is the floor applied to record TTLs.
	MinTTL time.Duration `mapstructure:"min_ttl"`
	// MaxTTL is the cap applied to record TTLs.
	MaxTTL time.Duration `mapstructure:"max_ttl"`
	// CrossNamespace says whether names resolved in one network namespace
	// may name a connect made in another: CrossNamespaceNone (the
	// default; empty means the same) or CrossNamespacePublicOnly.
	CrossNamespace string `mapstructure:"cross_namespace"`
	// StateFile, when set, is the absolute path of a file the cache is
	// saved to every StateInterval and at shutdown (atomically replaced),
	// and restored from at start, so that names survive a restart. A
	// missing, truncated, corrupt, foreign-version or other-boot file is
	// logged and ignored. Empty (the default): no state file.
	StateFile string `mapstructure:"state_file"`
	// StateInterval is how often the state file is written.
	StateInterval time.Duration `mapstructure:"state_interval"`
}

// DefaultConfig returns the default configuration: enabled, 65536 entries,
// 8 names per IP, TTLs clamped to [5s, 1h], names kept in their network
// namespace, no state file.
func DefaultConfig() Config {
	return Config{
		Enabled:        true,
		MaxEntries:     DefaultMaxEntries,
		MaxNamesPerIP:  DefaultMaxNamesPerIP,
		MinTTL:         DefaultMinTTL,
		MaxTTL:         DefaultMaxTTL,
		CrossNamespace: CrossNamespaceNone,
		StateInterval:  DefaultStateInterval,
	}
}

// Validate reports every invalid field, each error naming the field and the
// reason. A disabled config is valid whatever its other fields hold.
func (c *Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.MaxEntries < 1 || c.MaxEntries > MaxMaxEntries {
		errs = append(errs, fmt.Errorf("dns.max_entries: must be between 1 and %d, got %d", MaxMaxEntries, c.MaxEntries))
	}
	if c.MaxNamesPerIP < 1 || c.MaxNamesPerIP > MaxMaxNamesPerIP {
		errs = append(errs, fmt.Errorf("dns.max_names_per_ip: must be between 1 and %d, got %d", MaxMaxNamesPerIP, c.MaxNamesPerIP))
	}
	if c.MinTTL < 0 {
		errs = append(errs, fmt.Errorf("dns.min_ttl: must not be negative, got %s", c.MinTTL))
	}
	if c.MaxTTL <= 0 {
		errs = append(errs, fmt.Errorf("dns.max_ttl: must be positive, got %s", c.MaxTTL))
	} else if c.MaxTTL < c.MinTTL {
		errs = append(errs, fmt.Errorf("dns.max_ttl: must be >= dns.min_ttl, got %s < %s", c.MaxTTL, c.MinTTL))
	}
	switch c.CrossNamespace {
	case "", CrossNamespaceNone, CrossNamespacePublicOnly:
	default:
		errs = append(errs, fmt.Errorf("dns.cross_namespace: must be %q or %q, got %q", CrossNamespaceNone, CrossNamespacePublicOnly, c.CrossNamespace))
	}
	if c.StateFile != "" {
		if !filepath.IsAbs(c.StateFile) || strings.HasSuffix(c.StateFile, "/") {
			errs = append(errs, fmt.Errorf("dns.state_file: must be an absolute file path, got %q", c.StateFile))
		}
		if c.StateInterval < MinStateInterval {
			errs = append(errs, fmt.Errorf("dns.state_interval: must be at least %s, got %s", MinStateInterval, c.StateInterval))
		}
	}
	return errors.Join(errs...)
}
