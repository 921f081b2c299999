package main

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
)

// fbcostTable summarises bench/fbcost.sh's rows: per load, pair by pair,
// the rate each collector kept (its run's rate over the same pair's run
// without a collector), NEW's rate over BASE's, each collector's CPU per
// unit (write, round trip or connect) and NEW's over BASE's, and the loss
// check; then, from the runs with the kernel's accounting on, the egress
// programs' run time per run and runs per unit.
func fbcostTable(args []string) error {
	fs := flag.NewFlagSet("fbcost", flag.ExitOnError)
	in := fs.String("in", "", "results.tsv from bench/fbcost.sh")
	_ = fs.Parse(args)
	t, err := readTSV(*in)
	if err != nil {
		return err
	}
	if len(t.rows) == 0 {
		return errors.New("no rows")
	}
	type pair map[string][]string // variant -> row
	var loads []string
	byLoad := map[string]map[string]pair{}
	var stats [][]string
	for _, r := range t.rows {
		if t.str(r, "stats") == "1" {
			stats = append(stats, r)
			continue
		}
		l := t.str(r, "load")
		if byLoad[l] == nil {
			byLoad[l] = map[string]pair{}
			loads = append(loads, l)
		}
		p := t.str(r, "pair")
		if byLoad[l][p] == nil {
			byLoad[l][p] = pair{}
		}
		byLoad[l][p][t.str(r, "variant")] = r
	}
	ratio := func(a, b []string, col string) (float64, bool) {
		if a == nil || b == nil {
			return 0, false
		}
		x, ok1 := t.num(a, col)
		y, ok2 := t.num(b, col)
		return x / y, ok1 && ok2 && y > 0
	}
	perUnit := func(r []string) (float64, bool) {
		if r == nil {
			return 0, false
		}
		c, ok1 := t.num(r, "cpu_s")
		u, ok2 := t.num(r, "units")
		return c / u * 1e6, ok1 && ok2 && u > 0
	}
	fmt.Println("| load | pairs | rate alone | rate kept base | rate kept new | new/base rate | collector CPU us/unit base | new | new/base CPU | segments per write | loss check |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, l := range loads {
		var alone, keptB, keptN, nb, cpuB, cpuN, cpuR, segs []float64
		var fails []string
		for _, pr := range byLoad[l] {
			add := func(v float64, ok bool, to *[]float64) {
				if ok {
					*to = append(*to, v)
				}
			}
			if v, ok := t.num(pr["none"], "rate"); ok && pr["none"] != nil {
				alone = append(alone, v)
			}
			if v, ok := t.num(pr["none"], "segs_per_write"); ok && pr["none"] != nil {
				segs = append(segs, v)
			}
			v, ok := ratio(pr["base"], pr["none"], "rate")
			add(v, ok, &keptB)
			v, ok = ratio(pr["new"], pr["none"], "rate")
			add(v, ok, &keptN)
			v, ok = ratio(pr["new"], pr["base"], "rate")
			add(v, ok, &nb)
			b, okB := perUnit(pr["base"])
			n, okN := perUnit(pr["new"])
			add(b, okB, &cpuB)
			add(n, okN, &cpuN)
			add(n/b, okB && okN && b > 0, &cpuR)
			for _, v := range []string{"base", "new"} {
				if bad := fbLossCheck(t, pr[v], l); bad != "" {
					fails = append(fails, v+" pair "+t.str(pr[v], "pair")+": "+bad)
				}
			}
		}
		loss := "0 lost in every run"
		if len(fails) > 0 {
			slices.Sort(fails)
			loss = "**LOSS**: " + strings.Join(fails, "; ")
		}
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", l, len(byLoad[l]),
			spread("%.0f", alone), spread("%.3f", keptB), spread("%.3f", keptN), spread("%.3f", nb),
			spread("%.3f", cpuB), spread("%.3f", cpuN), spread("%.3f", cpuR), spread("%.3f", segs), loss)
	}
	if len(stats) == 0 {
		return nil
	}
	fmt.Println()
	fmt.Println("| load | collector | tc_fb_egress ns per run | its runs per unit | tc_dns_egress ns per run | its runs per unit | programs held |")
	fmt.Println("|---|---|---|---|---|---|---|")
	per := func(r []string, ns, runs string) (string, string) {
		n, ok1 := t.num(r, ns)
		c, ok2 := t.num(r, runs)
		u, ok3 := t.num(r, "units")
		if !ok1 || !ok2 || c == 0 {
			return "n/a", "n/a"
		}
		pu := "n/a"
		if ok3 && u > 0 {
			pu = fmt.Sprintf("%.3f", c/u)
		}
		return fmt.Sprintf("%.1f", n/c), pu
	}
	for _, r := range stats {
		fbN, fbU := per(r, "fb_ns", "fb_runs")
		dN, dU := per(r, "dns_ns", "dns_runs")
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s |\n", t.str(r, "load"), t.str(r, "variant"), fbN, fbU, dN, dU, t.str(r, "progs"))
	}
	return nil
}

// fbLossCheck says whether collector run r lost a connect: the receiver
// read at least the load's connects (one for writes and pingpong), the sink
// counted every record the receiver read, the kernel's loss counter is 0.
// The empty string means no loss.
func fbLossCheck(t *tsv, r []string, load string) string {
	if r == nil {
		return ""
	}
	made := 1.0
	if load == "tls" {
		made, _ = t.num(r, "units")
	}
	var bad []string
	if lost, ok := t.num(r, "kernel_lost"); !ok || lost != 0 {
		bad = append(bad, "kernel lost "+t.str(r, "kernel_lost"))
	}
	read, ok1 := t.num(r, "recv")
	sink, ok2 := t.num(r, "sink")
	switch {
	case !ok1 || !ok2:
		bad = append(bad, "counts unknown")
	case sink < read:
		bad = append(bad, fmt.Sprintf("receiver read %.0f, sink counted %.0f", read, sink))
	case read < made:
		bad = append(bad, fmt.Sprintf("made %.0f, receiver read %.0f", made, read))
	}
	return strings.Join(bad, ", ")
}
