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
	var loads []string
	byLoad := map[string]map[string]map[string][]string{} // load -> pair -> variant -> row
	var stats [][]string
	for _, r := range t.rows {
		if t.str(r, "stats") == "1" {
			stats = append(stats, r)
			continue
		}
		l := t.str(r, "load")
		if byLoad[l] == nil {
			byLoad[l] = map[string]map[string][]string{}
			loads = append(loads, l)
		}
		p := t.str(r, "pair")
		if byLoad[l][p] == nil {
			byLoad[l][p] = map[string][]string{}
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
	fmt.Println("| load | variant | pairs | rate (median, range) | rate over no collector's, same pair | collector CPU us/unit | segments per write | loss check |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, l := range loads {
		for _, v := range variantsOf(byLoad[l]) {
			var rate, kept, cpu, segs []float64
			var fails []string
			for _, pr := range byLoad[l] {
				r := pr[v]
				if r == nil {
					continue
				}
				if x, ok := t.num(r, "rate"); ok {
					rate = append(rate, x)
				}
				if x, ok := t.num(r, "segs_per_write"); ok {
					segs = append(segs, x)
				}
				if x, ok := ratio(r, pr["none"], "rate"); ok && v != "none" {
					kept = append(kept, x)
				}
				if x, ok := perUnit(r); ok && v != "none" {
					cpu = append(cpu, x)
				}
				if bad := fbLossCheck(t, r, l, v); bad != "" {
					fails = append(fails, "pair "+t.str(r, "pair")+": "+bad)
				}
			}
			loss := "0 lost in every run"
			if v == "none" {
				loss = "-"
			} else if len(fails) > 0 {
				slices.Sort(fails)
				loss = "**LOSS**: " + strings.Join(fails, "; ")
			}
			fmt.Printf("| %s | %s | %d | %s | %s | %s | %s | %s |\n", l, v, len(rate),
				spread("%.0f", rate), spread("%.3f", kept), spread("%.3f", cpu), spread("%.3f", segs), loss)
		}
	}
	fmt.Println()
	fmt.Println("| load | comparison | pairs | rate ratio, same pair | collector CPU per unit ratio, same pair |")
	fmt.Println("|---|---|---|---|---|")
	for _, l := range loads {
		for _, c := range [][2]string{{"new", "base"}, {"new", "new-nofb"}, {"base", "base-nofb"}, {"new-nofb", "base"}} {
			var rr, cr []float64
			for _, pr := range byLoad[l] {
				if x, ok := ratio(pr[c[0]], pr[c[1]], "rate"); ok {
					rr = append(rr, x)
				}
				a, okA := perUnit(pr[c[0]])
				b, okB := perUnit(pr[c[1]])
				if okA && okB && b > 0 {
					cr = append(cr, a/b)
				}
			}
			if len(rr) > 0 {
				fmt.Printf("| %s | %s / %s | %d | %s | %s |\n", l, c[0], c[1], len(rr), spread("%.3f", rr), spread("%.3f", cr))
			}
		}
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

// variantsOf lists the variants of a load's pairs: none first, then in
// the order of the first pair that has them.
func variantsOf(pairs map[string]map[string][]string) []string {
	seen := map[string]bool{}
	var vs []string
	keys := make([]string, 0, len(pairs))
	for k := range pairs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for v := range pairs[k] {
			if !seen[v] {
				seen[v] = true
				vs = append(vs, v)
			}
		}
	}
	order := map[string]int{"none": 0, "base": 1, "base-nofb": 2, "new-nofb": 3, "new": 4}
	slices.SortFunc(vs, func(a, b string) int { return order[a] - order[b] })
	return vs
}

// fbLossCheck says whether collector run r lost a connect: the receiver
// read at least the load's connects (one for writes and pingpong), the sink
// counted every record the receiver read, the kernel's loss counter is 0.
// The empty string means no loss.
func fbLossCheck(t *tsv, r []string, load, variant string) string {
	if r == nil || variant == "none" {
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
