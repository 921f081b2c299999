package tcpconnectreceiver

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.uber.org/zap"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/caps"
)

// source is where the receiver reads kernel records from: the eBPF probe in
// production, a replay of raw records in tests. One goroutine calls
// SetDeadline, ReadInto and Counters; Close may be called from another after that
// goroutine stopped.
type source interface {
	// Mode is the attach mode in use (lsm, fentry, kprobe, cgroup).
	Mode() string
	// Attempts are the attach modes tried at start, the one in use last.
	Attempts() []bpf.Attempt
	// SetDeadline bounds how long ReadInto waits for a record.
	SetDeadline(t time.Time)
	// ReadInto reads the next record into rec, reusing its buffer. It
	// returns os.ErrDeadlineExceeded when the deadline passed with nothing
	// to read.
	ReadInto(rec *ringbuf.Record) error
	// Counters returns the kernel's cumulative counters.
	Counters() (bpf.Counters, error)
	// SelfTGID is the collector's tgid as the kernel sees it (host PID
	// namespace), 0 when the attach mode was not proven.
	SelfTGID() uint32
	// CgroupRoot is the host's cgroup v2 root directory, "" when none was
	// found; the process cache maps cgroup ids to paths below it.
	CgroupRoot() string
	// Close detaches and frees everything the source holds.
	Close() error
}

// openSourceFunc opens the event source for a configuration.
type openSourceFunc func(cfg *Config, logger *zap.Logger) (source, error)

// probeSource adapts *bpf.Probe to source.
type probeSource struct {
	*bpf.Probe
	cgroup *bpf.CgroupRoot // nil with cgroup_path set or no cgroup v2 root
	path   string          // the cgroup v2 directory the probe uses
}

func (p probeSource) Mode() string { return string(p.Probe.Mode()) }

// CgroupRoot is the host's cgroup v2 root, or cgroup_path when it was set.
func (p probeSource) CgroupRoot() string { return p.path }

// Close closes the probe, then unmounts the cgroup2 mount made for it.
func (p probeSource) Close() error {
	return errors.Join(p.Probe.Close(), p.cgroup.Close())
}

// openProbe loads and attaches the eBPF programs. It logs the mode it got and
// why each earlier mode of auto failed. Without cgroup_path it finds the
// host's cgroup v2 root (mounting one when none is mounted); a root that
// cannot be found is an error when the cgroup mode or DNS capture needs it.
func openProbe(cfg *Config, logger *zap.Logger) (source, error) {
	mode, err := bpf.ParseMode(cfg.Attach)
	if err != nil {
		return nil, err
	}
	filter, err := cfg.Filter.toBPF()
	if err != nil {
		return nil, err
	}
	firstBytes := cfg.Outcome.Enabled && cfg.FirstBytes.on()
	var cg *bpf.CgroupRoot
	path := cfg.CgroupPath
	if path == "" {
		cg, err = bpf.FindCgroupRoot()
		switch {
		case err != nil && (mode == bpf.ModeCgroup || cfg.DNS.Enabled):
			return nil, fmt.Errorf("cgroup v2 root (needed by attach: cgroup and dns capture): %w", err)
		case err != nil:
			logger.Warn("No cgroup v2 root: attach mode cgroup unavailable, first bytes off, container.id only from /proc", zap.Error(err))
			firstBytes = false
		default:
			path = cg.Path
			if cg.Mounted {
				logger.Info("No cgroup2 mount: mounted the cgroup v2 root privately", zap.String("path", path))
			}
		}
	}
	opts := bpf.Options{
		Mode:        mode,
		CgroupPath:  path,
		RingBytes:   cfg.RingBufferSize,
		DNS:         cfg.DNS.Enabled,
		Filter:      filter,
		ExcludeSelf: cfg.ExcludeSelf,
	}
	if cfg.Outcome.Enabled {
		opts.Outcome, opts.OutcomeSockets = true, cfg.Outcome.MaxWaiting
	}
	if firstBytes {
		opts.FirstBytes, opts.FirstBytesMax = true, cfg.FirstBytes.MaxBytes
	}
	if cfg.Aggregation.Enabled {
		opts.Aggregate, opts.AggregateKeys = true, cfg.Aggregation.MaxKeys
		opts.AggregateSkipOutcomes = !cfg.Aggregation.CountOutcomes
	}
	if err := cfg.checkHost(); err != nil {
		return nil, err
	}
	if err := checkCaps(mode, cfg.DNS.Enabled, firstBytes, logger); err != nil {
		return nil, err
	}
	opened := time.Now()
	p, err := bpf.Open(opts)
	if err != nil {
		_ = cg.Close()
		var oe *bpf.OpenError
		if errors.As(err, &oe) {
			logAttempts(logger, mode, oe.Attempts)
		}
		return nil, fmt.Errorf("open eBPF probe: %w", cfg.openError(err))
	}
	logAttempts(logger, mode, p.Attempts())
	logger.Info("eBPF programs loaded and attached", zap.String("mode", string(p.Mode())), zap.Duration("took", time.Since(opened)))
	if cfg.Outcome.Enabled {
		logger.Info("Connect outcome tracking on", zap.Duration("max_wait", cfg.Outcome.MaxWait), zap.Int("max_waiting", cfg.Outcome.MaxWaiting))
	} else {
		logger.Info("Connect outcome tracking off")
	}
	switch {
	case firstBytes:
		logger.Info("First bytes on: connects named by their TLS server name or HTTP Host",
			zap.Bool("tls", cfg.FirstBytes.TLS), zap.Bool("http", cfg.FirstBytes.HTTP), zap.Int("max_bytes", cfg.FirstBytes.MaxBytes))
	case cfg.FirstBytes.on() && !cfg.Outcome.Enabled:
		logger.Info("First bytes inactive: they are captured only for sockets the outcome follows, and outcome.enabled is false")
	}
	return probeSource{Probe: p, cgroup: cg, path: path}, nil
}

// logAttempts logs each attach mode tried and why it was left, and the one in
// use with its proof.
func logAttempts(logger *zap.Logger, requested bpf.Mode, attempts []bpf.Attempt) {
	for _, a := range attempts {
		switch {
		case a.Err != nil:
			logger.Info("Attach mode left", zap.String("mode", string(a.Mode)), zap.String("requested", string(requested)), zap.Error(a.Err))
		case a.ProofSkipped != "":
			logger.Warn("Attached connect hook; not proven", zap.String("mode", string(a.Mode)), zap.String("requested", string(requested)), zap.String("reason", a.ProofSkipped))
		default:
			logger.Info("Attached connect hook; proof connect reported", zap.String("mode", string(a.Mode)), zap.String("requested", string(requested)), zap.Duration("proof", a.Proof))
		}
	}
}

// checkCaps fails when the process lacks a capability that loading or
// attaching needs, naming it, and logs one warning for each missing optional
// one. When the set cannot be read it lets Open try. It first makes the
// permitted capabilities effective (a non-root process holds the binary's
// file capabilities as permitted only).
func checkCaps(mode bpf.Mode, dnsOn, firstBytesOn bool, logger *zap.Logger) error {
	have, err := caps.RaiseEffective()
	if err != nil {
		logger.Warn("Cannot make the permitted capabilities effective", zap.Error(err))
		have, err = caps.Effective()
	}
	if err != nil {
		logger.Warn("Cannot read the process's capabilities: not checked before loading", zap.Error(err))
		return nil
	}
	warnings, err := caps.Check(have, caps.Needs{
		Cgroup:            mode == bpf.ModeCgroup,
		CgroupFallback:    mode == bpf.ModeAuto,
		DNS:               dnsOn,
		FirstBytes:        firstBytesOn,
		Kprobe:            mode == bpf.ModeKprobe,
		KprobeFallback:    mode == bpf.ModeAuto,
		PerfEventParanoid: caps.PerfEventParanoid(),
	})
	for _, w := range warnings {
		logger.Warn("Capability missing", zap.String("capability", w.Cap.Name()), zap.String("effect", w.Effect))
	}
	return err
}
