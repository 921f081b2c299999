package receiver

import (
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.uber.org/zap"

	"github.com/tcpconnect/tcpconnect/bpf"
)

// source is where the receiver reads kernel records from: the eBPF probe in
// production, a replay of raw records in tests. One goroutine calls
// SetDeadline, ReadInto and Lost; Close may be called from another after that
// goroutine stopped.
type source interface {
	// Mode is the attach mode in use (lsm, fentry, kprobe, cgroup).
	Mode() string
	// SetDeadline bounds how long ReadInto waits for a record.
	SetDeadline(t time.Time)
	// ReadInto reads the next record into rec, reusing its buffer. It
	// returns os.ErrDeadlineExceeded when the deadline passed with nothing
	// to read.
	ReadInto(rec *ringbuf.Record) error
	// Lost returns the kernel's cumulative loss counters.
	Lost() (bpf.Lost, error)
	// Close detaches and frees everything the source holds.
	Close() error
}

// openSourceFunc opens the event source for a configuration.
type openSourceFunc func(cfg *Config, logger *zap.Logger) (source, error)

// probeSource adapts *bpf.Probe to source.
type probeSource struct{ *bpf.Probe }

func (p probeSource) Mode() string { return string(p.Probe.Mode()) }

// openProbe loads and attaches the eBPF programs. It logs the mode it got and
// why each earlier mode of auto failed.
func openProbe(cfg *Config, logger *zap.Logger) (source, error) {
	mode, err := bpf.ParseMode(cfg.Attach)
	if err != nil {
		return nil, err
	}
	filter, err := cfg.Filter.toBPF()
	if err != nil {
		return nil, err
	}
	opts := bpf.Options{
		Mode:       mode,
		CgroupPath: cfg.CgroupPath,
		RingBytes:  cfg.RingBufferSize,
		DNS:        cfg.DNS.Enabled,
		Filter:     filter,
	}
	if cfg.ExcludeSelf {
		opts.ExcludeTGID = uint32(os.Getpid())
	}
	p, err := bpf.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open eBPF probe: %w", err)
	}
	for _, a := range p.Attempts() {
		if a.Err != nil {
			logger.Info("Attach mode unavailable", zap.String("mode", string(a.Mode)), zap.Error(a.Err))
		}
	}
	logger.Info("Attached connect hook", zap.String("mode", string(p.Mode())), zap.String("requested", string(mode)))
	return probeSource{p}, nil
}
