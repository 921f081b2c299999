package receiver

import (
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/pdata/plog"
)

func TestAggregationConfig(t *testing.T) {
	tests := []struct {
		name    string
		raw     map[string]any
		wantErr string // "" for valid
	}{
		{"off by default", nil, ""},
		{"off ignores its fields", map[string]any{"window": "0s", "max_keys": 0}, ""},
		{"on", map[string]any{"enabled": true, "window": "30s", "max_keys": 100}, ""},
		{"on with defaults", map[string]any{"enabled": true}, ""},
		{"window zero", map[string]any{"enabled": true, "window": "0s"}, "aggregation.window: must be between 100ms and 1h0m0s, got 0s"},
		{"window negative", map[string]any{"enabled": true, "window": "-1s"}, "aggregation.window: must be between"},
		{"window too long", map[string]any{"enabled": true, "window": "2h"}, "aggregation.window: must be between"},
		{"window below poll interval", map[string]any{"enabled": true, "window": "200ms", "poll": "1s"}, "aggregation.window: must be at least poll_interval (1s)"},
		{"max keys zero", map[string]any{"enabled": true, "max_keys": 0}, "aggregation.max_keys: must be between 1 and 262144, got 0"},
		{"max keys too many", map[string]any{"enabled": true, "max_keys": 1 << 20}, "aggregation.max_keys: must be between 1 and 262144"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			if cfg.Aggregation.Enabled {
				t.Fatal("aggregation on by default: one record per attempt must stay the default")
			}
			raw := map[string]any{}
			for k, v := range tt.raw {
				if k == "poll" {
					raw["poll_interval"] = v
					continue
				}
				raw["aggregation::"+k] = v
			}
			if err := confmap.NewFromStringMap(raw).Unmarshal(cfg); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate: %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestSummaryBytesBound checks that summaryExtraBytes bounds what a summary
// adds to a record, at its largest count and longest times.
func TestSummaryBytesBound(t *testing.T) {
	for _, tt := range []struct {
		name        string
		count       uint64
		first, last time.Time
	}{
		{"small", 1, time.Unix(0, 0), time.Unix(1, 0)},
		{"largest", 1<<63 - 1, time.Date(2026, 12, 31, 23, 59, 59, 123456789, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", 3600))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lr := plog.NewLogRecord()
			n := putSummary(lr, tt.count, tt.first, tt.last)
			if n > summaryExtraBytes {
				t.Errorf("summary attributes bound %d, above summaryExtraBytes %d", n, summaryExtraBytes)
			}
			if v, _ := lr.Attributes().Get(attrConnectCount); v.Int() != int64(tt.count) {
				t.Errorf("count %d, want %d", v.Int(), tt.count)
			}
			if v, _ := lr.Attributes().Get(attrConnectLastTime); !strings.HasSuffix(v.Str(), "Z") {
				t.Errorf("last time %q not in UTC", v.Str())
			}
		})
	}
}
