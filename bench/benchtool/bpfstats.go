package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
)

// bpfStats prints the kernel's run-time accounting of the eBPF programs
// process pid holds (found by the prog_id of its file descriptors), summed
// by program name: NAME_ns=TOTAL_NS NAME_runs=RUNS for each, in name order.
// The kernel accounts only while statistics are enabled (bpfStatsHold).
// With -hold it enables them instead (BPF_ENABLE_STATS, for as long as this
// process lives: no sysctl is changed) and waits for SIGTERM or SIGINT.
func bpfStats(args []string) error {
	fs := flag.NewFlagSet("bpfstats", flag.ExitOnError)
	pid := fs.Int("pid", 0, "the process whose programs to read")
	hold := fs.Bool("hold", false, "enable the kernel's run-time statistics until SIGTERM/SIGINT")
	_ = fs.Parse(args)
	if *hold {
		return bpfStatsHold()
	}
	if *pid <= 0 {
		return errors.New("need -pid or -hold")
	}
	ids, err := progIDs(*pid)
	if err != nil {
		return err
	}
	type sum struct{ ns, runs uint64 }
	byName := map[string]*sum{}
	for _, id := range ids {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			return fmt.Errorf("program %d: %w", id, err)
		}
		info, err := p.Info()
		if err != nil {
			p.Close()
			return fmt.Errorf("program %d: %w", id, err)
		}
		st, err := p.Stats()
		p.Close()
		if err != nil {
			return fmt.Errorf("program %d (%s): %w", id, info.Name, err)
		}
		s := byName[info.Name]
		if s == nil {
			s = &sum{}
			byName[info.Name] = s
		}
		s.ns += uint64(st.Runtime.Nanoseconds())
		s.runs += st.RunCount
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	f := []string{fmt.Sprintf("progs=%d", len(ids))}
	for _, n := range names {
		f = append(f, fmt.Sprintf("%s_ns=%d %s_runs=%d", n, byName[n].ns, n, byName[n].runs))
	}
	fmt.Println(strings.Join(f, " "))
	return nil
}

// progIDs are the program IDs of pid's eBPF program file descriptors (a
// program fd's fdinfo has a prog_id line), each once.
func progIDs(pid int) ([]ebpf.ProgramID, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fdinfo")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("fdinfo: %w", err)
	}
	var ids []ebpf.ProgramID
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed since the listing
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "prog_id:"); ok {
				if id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
					ids = append(ids, ebpf.ProgramID(id))
				}
			}
		}
		f.Close()
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// bpfStatsHold keeps the kernel's run-time statistics on until a signal.
func bpfStatsHold() error {
	st, err := ebpf.EnableStats(uint32(0)) // BPF_STATS_RUN_TIME
	if err != nil {
		return fmt.Errorf("BPF_ENABLE_STATS: %w", err)
	}
	defer st.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	fmt.Println("stats=on")
	<-sig
	return nil
}
