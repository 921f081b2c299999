package procinfo

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// ClockTicks is USER_HZ, the unit of /proc/PID/stat's times. It is 100 on
// every Linux architecture's user ABI.
const ClockTicks = 100

// Stat is what the module reads from /proc/PID/stat (proc(5)). Times are in
// ClockTicks.
type Stat struct {
	// Comm is the command name, as the kernel shows it between parentheses.
	Comm string
	// State is the one-letter process state (R, S, D, Z, ...).
	State byte
	// PPID is the parent's pid (field 4).
	PPID int
	// Flags are the kernel's per-task flags (field 9), e.g. PFKthread.
	Flags uint64
	// UTime and STime are the user and system CPU time (fields 14 and 15).
	UTime, STime uint64
	// StartTime is the start time after boot (field 22).
	StartTime uint64
}

// CPUSeconds returns UTime+STime in seconds.
func (s Stat) CPUSeconds() float64 { return float64(s.UTime+s.STime) / ClockTicks }

// ReadStat reads and parses procRoot/PID/stat; procRoot "" means /proc.
func ReadStat(procRoot string, pid int) (Stat, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	p := filepath.Join(procRoot, strconv.Itoa(pid), "stat")
	b, err := os.ReadFile(p)
	if err != nil {
		return Stat{}, fmt.Errorf("read %s: %w", p, err)
	}
	s, err := ParseStat(b)
	if err != nil {
		return Stat{}, fmt.Errorf("%s: %w", p, err)
	}
	return s, nil
}

// ParseStat parses one /proc/PID/stat line: "pid (comm) state ppid ...".
// The comm may hold spaces and parentheses (any process can set it), so it
// spans from the first '(' to the last ')'.
func ParseStat(b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Stat{}, errors.New("stat: no (comm)")
	}
	s := Stat{Comm: string(b[open+1 : end])}
	// Fields after comm, numbered as in proc(5): state is field 3.
	const (
		first     = 3
		fState    = 3
		fPPID     = 4
		fFlags    = 9
		fUTime    = 14
		fSTime    = 15
		fStart    = 22
		fieldsMin = fStart - first + 1
	)
	var fields [fieldsMin][]byte
	n := 0
	for f := range bytes.FieldsSeq(b[end+1:]) {
		if n == fieldsMin {
			break
		}
		fields[n] = f
		n++
	}
	if n < fieldsMin {
		return Stat{}, fmt.Errorf("stat: %d fields after comm, want at least %d", n, fieldsMin)
	}
	if len(fields[fState-first]) != 1 {
		return Stat{}, fmt.Errorf("stat: state %q is not one letter", fields[fState-first])
	}
	s.State = fields[fState-first][0]
	var errs []error
	num := func(field int) uint64 {
		v, err := strconv.ParseUint(string(fields[field-first]), 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("stat: field %d: %w", field, err))
		}
		return v
	}
	s.PPID = int(num(fPPID))
	s.Flags = num(fFlags)
	s.UTime = num(fUTime)
	s.STime = num(fSTime)
	s.StartTime = num(fStart)
	if err := errors.Join(errs...); err != nil {
		return Stat{}, err
	}
	return s, nil
}

// Memory is the memory use that /proc/PID/status reports, in bytes.
type Memory struct {
	// RSS is the resident set size (VmRSS).
	RSS uint64
	// PeakRSS is the resident set's high-water mark (VmHWM).
	PeakRSS uint64
}

// ReadMemory reads procRoot/PID/status; procRoot "" means /proc.
func ReadMemory(procRoot string, pid int) (Memory, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	p := filepath.Join(procRoot, strconv.Itoa(pid), "status")
	b, err := os.ReadFile(p)
	if err != nil {
		return Memory{}, fmt.Errorf("read %s: %w", p, err)
	}
	m, err := ParseMemory(b)
	if err != nil {
		return Memory{}, fmt.Errorf("%s: %w", p, err)
	}
	return m, nil
}

// ParseMemory reads VmRSS and VmHWM ("Key:   123 kB" lines) from a
// /proc/PID/status file. A kernel thread has neither: both are then 0.
func ParseMemory(b []byte) (Memory, error) {
	var m Memory
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		key, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		var dst *uint64
		switch string(key) {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.PeakRSS
		default:
			continue
		}
		num, ok := bytes.CutSuffix(bytes.TrimSpace(val), []byte(" kB"))
		if !ok {
			return Memory{}, fmt.Errorf("status: %s: %q is not in kB", key, val)
		}
		kb, err := strconv.ParseUint(string(bytes.TrimSpace(num)), 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("status: %s: %w", key, err)
		}
		*dst = kb << 10
	}
	return m, nil
}
