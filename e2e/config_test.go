package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// exitTimeout bounds how long a collector with an invalid configuration may
// take to exit.
const exitTimeout = 15 * time.Second

// badConfig is a configuration whose tcpconnect receiver section is %s.
const badConfig = `
receivers:
  tcpconnect:
%s
exporters:
  debug:
service:
  pipelines:
    logs:
      receivers: [tcpconnect]
      exporters: [debug]
  telemetry:
    metrics:
      level: none
`

// TestInvalidConfigExits checks that the collector refuses an invalid
// tcpconnect configuration: it exits non-zero, before loading anything, with
// a message on standard error that names the offending field. It needs the
// binary but not root.
func TestInvalidConfigExits(t *testing.T) {
	bin := collectorBinary(t)
	configs := []struct {
		name     string
		receiver string // the receiver's section, indented
		field    string // what the error message must name
	}{
		{"unknown attach mode", "    attach: bogus", "attach"},
		{"ring buffer not a power of two", "    ring_buffer_size: 3", "ring_buffer_size"},
		{"poll interval zero", "    poll_interval: 0s", "poll_interval"},
		{"batch size zero", "    batch:\n      max_size: 0", "batch.max_size"},
		{"unknown key", "    attach_mode: cgroup", "attach_mode"},
		{"outcome wait too long", "    outcome:\n      max_wait: 1h", "outcome.max_wait"},
	}
	commands := []struct {
		name string
		args func(path string) []string
	}{
		{"run", func(p string) []string { return []string{"--config", p} }},
		{"validate", func(p string) []string { return []string{"validate", "--config", p} }},
	}
	for _, cfg := range configs {
		path := writeConfig(t, "bad", fmt.Sprintf(badConfig, cfg.receiver))
		for _, cmd := range commands {
			t.Run(cfg.name+"/"+cmd.name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
				defer cancel()
				c := exec.CommandContext(ctx, bin, cmd.args(path)...)
				var stderr syncBuffer
				c.Stderr = &stderr
				err := c.Run()
				if ctx.Err() != nil {
					t.Fatalf("collector still running after %s with %s; stderr:\n%s", exitTimeout, cfg.receiver, stderr.String())
				}
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatalf("collector exited with %v, want a non-zero exit status; stderr:\n%s", err, stderr.String())
				}
				msg := stderr.String()
				if !strings.Contains(msg, cfg.field) {
					t.Errorf("exit status %d; stderr does not name %q:\n%s", exit.ExitCode(), cfg.field, msg)
				}
				if !strings.Contains(msg, "tcpconnect") {
					t.Errorf("stderr does not name the component tcpconnect:\n%s", msg)
				}
			})
		}
	}
}
