package tcpconnectreceiver

import (
	"context"
	"fmt"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"

	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadata"
)

// NewFactory returns the factory of the tcpconnect receiver.
func NewFactory() receiver.Factory {
	return newFactory(openProbe)
}

// newFactory returns a factory whose receivers read from the source that open
// returns: the eBPF probe in production, a replay in tests.
func newFactory(open openSourceFunc) receiver.Factory {
	return receiver.NewFactory(
		metadata.Type,
		func() component.Config { return createDefaultConfig() },
		receiver.WithLogs(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("tcpconnect receiver: config type %T, want *Config", cfg)
			}
			return newReceiver(set, c, next, open)
		}, metadata.LogsStability),
	)
}
