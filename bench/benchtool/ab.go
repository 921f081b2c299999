package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// tsv is bench/run.sh's results.tsv: a header and rows of fields.
type tsv struct {
	col  map[string]int
	rows [][]string
}

func readTSV(path string) (*tsv, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	head := strings.Split(lines[0], "\t")
	t := &tsv{col: map[string]int{}}
	for i, h := range head {
		t.col[h] = i
	}
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) != len(head) {
			return nil, fmt.Errorf("row %q: %d fields, want %d", l, len(f), len(head))
		}
		t.rows = append(t.rows, f)
	}
	return t, nil
}

// num is row r's value of column name; false when the column is missing or
// the field is not a number (NA).
func (t *tsv) num(r []string, name string) (float64, bool) {
	i, ok := t.col[name]
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(r[i], 64)
	return v, err == nil
}

func (t *tsv) str(r []string, name string) string {
	if i, ok := t.col[name]; ok {
		return r[i]
	}
	return ""
}

// spread is "median (min-max)" of v with format f, "n/a" when v is empty.
func spread(f string, v []float64) string {
	if len(v) == 0 {
		return "n/a"
	}
	v = slices.Clone(v)
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return fmt.Sprintf(f+" ("+f+"-"+f+")", m, v[0], v[len(v)-1])
}

// lossCheck says whether run r lost a connect: the storm's own records
// counted in the output against its connects (file, otlp, agent,
// bpftrace), or, for the counting sink, the records its exporter took
// against what the receiver had read by the storm's end (all of the host's
// connects in that window, so at least the storm's), with the kernel's loss
// counter at 0. The empty string means no loss.
func (t *tsv) lossCheck(r []string) string {
	made, okMade := t.num(r, "connects")
	if !okMade {
		return "connects unknown"
	}
	var bad []string
	if lost, ok := t.num(r, "kernel_lost"); ok && lost != 0 {
		bad = append(bad, fmt.Sprintf("kernel lost %.0f", lost))
	}
	if got, ok := t.num(r, "matched"); ok {
		if got != made {
			bad = append(bad, fmt.Sprintf("made %.0f, delivered %.0f", made, got))
		}
	} else if sink, ok := t.num(r, "sink_records"); ok {
		read, okRead := t.num(r, "events")
		switch {
		case !okRead:
			bad = append(bad, "receiver read count unknown")
		case sink < read:
			bad = append(bad, fmt.Sprintf("receiver read %.0f, sink counted %.0f", read, sink))
		case read < made:
			bad = append(bad, fmt.Sprintf("made %.0f, receiver read %.0f", made, read))
		}
	} else {
		bad = append(bad, "no record count")
	}
	return strings.Join(bad, ", ")
}

// abTable summarises bench/run.sh --ab's rows: per setup S, its S@base and
// S rows of one pair side by side. Every figure is per connect the storm
// made, so runs of different lengths compare.
func abTable(args []string) error {
	fs := flag.NewFlagSet("ab", flag.ExitOnError)
	in := fs.String("in", "", "results.tsv from run.sh --ab")
	_ = fs.Parse(args)
	t, err := readTSV(*in)
	if err != nil {
		return err
	}
	if len(t.rows) == 0 {
		return errors.New("no rows")
	}
	perConnect := func(r []string, name string, scale float64) (float64, bool) {
		v, ok1 := t.num(r, name)
		c, ok2 := t.num(r, "connects")
		return v / c * scale, ok1 && ok2 && c > 0
	}
	kept := func(r []string) (float64, bool) {
		a, ok1 := t.num(r, "rate_a")
		b, ok2 := t.num(r, "rate_b")
		return b / a, ok1 && ok2 && a > 0
	}
	type run struct{ base, cur []string }
	var order []string
	bySetup := map[string]map[string]*run{} // setup -> pair -> runs
	for _, r := range t.rows {
		setup, isBase := strings.CutSuffix(t.str(r, "setup"), "@base")
		if bySetup[setup] == nil {
			bySetup[setup] = map[string]*run{}
			order = append(order, setup)
		}
		p := t.str(r, "pair")
		if bySetup[setup][p] == nil {
			bySetup[setup][p] = &run{}
		}
		if isBase {
			bySetup[setup][p].base = r
		} else {
			bySetup[setup][p].cur = r
		}
	}
	// The bpftrace reference, pair by pair: with run.sh --interleave its
	// pair P ran next to every setup's pair P.
	bt := map[string]float64{}
	for p, ru := range bySetup["bpftrace"] {
		if ru.cur != nil {
			if v, ok := perConnect(ru.cur, "cpu_s", 1); ok && v > 0 {
				bt[p] = v
			}
		}
	}
	fmt.Println("| setup | pairs | new/base CPU per connect, median (min-max) | CPU us/connect base | CPU us/connect new | CPU per connect / bpftrace's, base / new | storm rate kept base | storm rate kept new | new/base gateway CPU | wire bytes/connect base / new | connects made (all runs) | loss check |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, setup := range order {
		var ratio, gwRatio, cpuB, cpuN, keptB, keptN, wireB, wireN, btB, btN []float64
		var made float64
		var fails []string
		pairs := 0
		collect := func(r []string, cpu, kp, wire *[]float64) {
			if r == nil {
				return
			}
			if v, ok := perConnect(r, "cpu_s", 1e6); ok {
				*cpu = append(*cpu, v)
			}
			if v, ok := kept(r); ok {
				*kp = append(*kp, v)
			}
			if v, ok := perConnect(r, "wire_bytes", 1); ok {
				*wire = append(*wire, v)
			}
			if c, ok := t.num(r, "connects"); ok {
				made += c
			}
			if bad := t.lossCheck(r); bad != "" {
				fails = append(fails, t.str(r, "setup")+" pair "+t.str(r, "pair")+": "+bad)
			}
		}
		for p, ru := range bySetup[setup] {
			pairs++
			if ref, ok := bt[p]; ok && setup != "bpftrace" {
				for _, x := range []struct {
					r   []string
					out *[]float64
				}{{ru.base, &btB}, {ru.cur, &btN}} {
					if x.r == nil {
						continue
					}
					if v, ok := perConnect(x.r, "cpu_s", 1); ok {
						*x.out = append(*x.out, v/ref)
					}
				}
			}
			collect(ru.base, &cpuB, &keptB, &wireB)
			collect(ru.cur, &cpuN, &keptN, &wireN)
			if ru.base == nil || ru.cur == nil {
				continue
			}
			b, ok1 := perConnect(ru.base, "cpu_s", 1)
			n, ok2 := perConnect(ru.cur, "cpu_s", 1)
			if ok1 && ok2 && b > 0 {
				ratio = append(ratio, n/b)
			}
			gb, ok1 := perConnect(ru.base, "gw_cpu_s", 1)
			gn, ok2 := perConnect(ru.cur, "gw_cpu_s", 1)
			if ok1 && ok2 && gb > 0 {
				gwRatio = append(gwRatio, gn/gb)
			}
		}
		loss := "0 lost in every run"
		if len(fails) > 0 {
			slices.Sort(fails)
			loss = "**LOSS**: " + strings.Join(fails, "; ")
		}
		wire := "n/a"
		if len(wireB) > 0 || len(wireN) > 0 {
			wire = spread("%.0f", wireB) + " / " + spread("%.0f", wireN)
		}
		fmt.Printf("| %s | %d | %s | %s | %s | %s / %s | %s | %s | %s | %s | %.0f | %s |\n",
			setup, pairs, spread("%.3f", ratio), spread("%.2f", cpuB), spread("%.2f", cpuN),
			spread("%.2f", btB), spread("%.2f", btN),
			spread("%.3f", keptB), spread("%.3f", keptN), spread("%.3f", gwRatio), wire, made, loss)
	}
	return nil
}
