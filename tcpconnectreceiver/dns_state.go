package tcpconnectreceiver

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadata"
)

// bootIDPath holds the kernel's boot id: a state file is only valid in the
// boot that wrote it (network namespace inode numbers are reused).
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// dnsState keeps the DNS cache in dns.state_file: loaded at start, saved
// every dns.state_interval and at shutdown. The reader goroutine encodes
// the cache (it owns the correlator); a writer goroutine writes the bytes,
// so that the reader never waits for the disk.
type dnsState struct {
	c      *dns.Correlator
	log    *zap.Logger // with the path
	tel    *metadata.TelemetryBuilder
	path   string
	boot   string
	every  time.Duration
	next   time.Time
	writes chan []byte // one deep: a save while the last is written waits for the next interval
}

// loadDNSState loads the state file at path into c, logging (never
// failing) when it is missing or refused; the cache is saved every
// interval once start started the writer.
func loadDNSState(c *dns.Correlator, path string, every time.Duration, log *zap.Logger, tel *metadata.TelemetryBuilder, now time.Time) *dnsState {
	s := &dnsState{c: c, log: log.With(zap.String("path", path)), tel: tel, path: path, every: every,
		writes: make(chan []byte, 1)}
	s.next = now.Add(s.every)
	if b, err := os.ReadFile(bootIDPath); err == nil {
		s.boot = strings.TrimSpace(string(b))
	} else {
		s.log.Warn("No boot id: the DNS state file cannot tell a reboot", zap.Error(err))
	}
	s.load(now)
	return s
}

// start starts the writer goroutine, counted in wg, which ends when the
// reader's final save closes writes.
func (s *dnsState) start(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for data := range s.writes {
			s.write(data)
		}
	}()
}

// load restores the state file into the cache.
func (s *dnsState) load(now time.Time) {
	ctx, log := context.Background(), s.log
	data, err := dns.ReadStateFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("No DNS state file yet: the cache starts empty")
		return
	}
	var st dns.StateStats
	if err == nil {
		st, err = s.c.LoadState(data, s.boot, now)
	}
	if err != nil {
		s.tel.ReceiverTcpconnectDNSStateFilesRefused.Add(ctx, 1)
		log.Warn("DNS state file ignored: the cache starts empty", zap.Error(err))
		return
	}
	s.tel.ReceiverTcpconnectDNSStateNamesSkipped.Add(ctx, int64(st.Skipped))
	log.Info("DNS cache restored from the state file",
		zap.Int("entries", st.Entries), zap.Int("names", st.Names), zap.Int("skipped", st.Skipped))
}

// tick saves the cache when the interval has passed. Called by the reader.
func (s *dnsState) tick(now time.Time) {
	if now.Before(s.next) {
		return
	}
	s.next = now.Add(s.every)
	select {
	case s.writes <- s.c.AppendState(nil, s.boot, now):
	default: // the last save is still being written: skip this one
	}
}

// final saves the cache once more, waiting for the writer, and ends it.
// Called by the reader when it stops.
func (s *dnsState) final(now time.Time) {
	s.writes <- s.c.AppendState(nil, s.boot, now)
	close(s.writes)
}

// write replaces the state file with data, counting and logging a failure.
func (s *dnsState) write(data []byte) {
	if err := dns.WriteStateFile(s.path, data); err != nil {
		s.tel.ReceiverTcpconnectDNSStateWritesFailed.Add(context.Background(), 1)
		s.log.Warn("Writing the DNS state file failed", zap.Error(err))
	}
}
