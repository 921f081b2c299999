package tcpconnectreceiver

import (
	"fmt"
	"time"

	"github.com/tcpconnect/tcpconnect/bpf"
)

// Defaults and bounds of AggregationConfig.
const (
	defaultAggregationWindow = 10 * time.Second
	minAggregationWindow     = 100 * time.Millisecond
	maxAggregationWindow     = time.Hour
)

// AggregationConfig configures the opt-in aggregation of repeated connects:
// per key (process, its network namespace, destination IP and port) the
// first connect of a window is reported at once, as without aggregation;
// its repeats are only counted in the kernel and reported when the window
// ends, as one summary record with tcpconnect.connect.count.
type AggregationConfig struct {
	// Enabled turns aggregation on. Off (the default), every connect
	// attempt is a record of its own.
	Enabled bool `mapstructure:"enabled"`
	// Window is how long a window lasts; its end is checked once per
	// poll_interval. Each end costs the reader an RCU grace period (some
	// milliseconds) while the kernel ring keeps filling.
	Window time.Duration `mapstructure:"window"`
	// MaxKeys bounds the keys of one window (two kernel maps of this many
	// entries, about 300 bytes each, allocated at start). A connect whose
	// key finds the map full is reported on its own and counted in
	// receiver_tcpconnect_aggregation_overflows.
	MaxKeys int `mapstructure:"max_keys"`
	// CountOutcomes puts on each summary its connects' counts per outcome
	// (tcpconnect.connect.outcomes.*), with outcome.enabled. The kernel
	// then follows each counted connect's socket, as it does each reported
	// one's: about 0.6 us of kernel time per connect (BENCHMARKS.md), paid
	// by the connecting process. Off, summaries carry the count only.
	CountOutcomes bool `mapstructure:"count_outcomes"`
}

func defaultAggregationConfig() AggregationConfig {
	return AggregationConfig{Window: defaultAggregationWindow, MaxKeys: bpf.DefaultAggregateKeys, CountOutcomes: true}
}

// validate checks the fields when aggregation is on.
func (a AggregationConfig) validate(pollInterval time.Duration) []error {
	if !a.Enabled {
		return nil
	}
	var errs []error
	if a.Window < minAggregationWindow || a.Window > maxAggregationWindow {
		errs = append(errs, fmt.Errorf("aggregation.window: must be between %s and %s, got %s", minAggregationWindow, maxAggregationWindow, a.Window))
	} else if a.Window < pollInterval {
		errs = append(errs, fmt.Errorf("aggregation.window: must be at least poll_interval (%s), at which its end is checked, got %s", pollInterval, a.Window))
	}
	if a.MaxKeys < 1 || a.MaxKeys > bpf.MaxAggregateKeys {
		errs = append(errs, fmt.Errorf("aggregation.max_keys: must be between 1 and %d, got %d", bpf.MaxAggregateKeys, a.MaxKeys))
	}
	return errs
}
