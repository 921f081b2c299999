package vmtest

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteSummary prints a table of every kernel and command with its status
// and seconds, each kernel's boot errors, and a closing
// "vmtest: N passed, N failed" line. It returns whether everything passed.
func WriteSummary(w io.Writer, reports []KernelReport) (bool, error) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL\tRELEASE\tCOMMAND\tRESULT\tEXIT\tSECONDS")
	passed, failed := 0, 0
	for _, r := range reports {
		for _, c := range r.Results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.1f\n", r.label(), r.Release, c.Name, c.Status, c.Exit, c.Seconds)
			if c.Status == Pass {
				passed++
			} else {
				failed++
			}
		}
		status := "OK"
		if !r.OK() {
			status = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%s\t(boot)\t%s\t\t%.1f\n", r.label(), r.Release, status, r.Wall.Seconds())
	}
	if err := tw.Flush(); err != nil {
		return false, fmt.Errorf("write summary: %w", err)
	}
	ok := len(reports) > 0
	for _, r := range reports {
		for _, e := range r.Errors {
			fmt.Fprintf(w, "vmtest: [%s] %s\n", r.label(), e)
		}
		if len(r.Errors) > 0 {
			failed++ // the boot itself failed, whatever its commands said
		}
		for _, c := range r.Results {
			if len(c.Failures) == 0 {
				continue
			}
			fmt.Fprintf(w, "vmtest: [%s] %s failed; the output of its failed tests:\n", r.label(), c.Name)
			for _, l := range c.Failures {
				fmt.Fprintf(w, "vmtest: [%s] ! %s\n", r.label(), l)
			}
		}
		if len(r.ConsoleTail) > 0 {
			fmt.Fprintf(w, "vmtest: [%s] the console's last %d lines:\n", r.label(), len(r.ConsoleTail))
			for _, l := range r.ConsoleTail {
				fmt.Fprintf(w, "vmtest: [%s] | %s\n", r.label(), l)
			}
		}
		if !r.OK() {
			ok = false
		}
	}
	if _, err := fmt.Fprintf(w, "vmtest: %d passed, %d failed\n", passed, failed); err != nil {
		return false, fmt.Errorf("write summary: %w", err)
	}
	return ok, nil
}

// label names the boot: the kernel, and what the plan added to its command
// line.
func (r *KernelReport) label() string {
	if r.Cmdline == "" {
		return r.Kernel.Name
	}
	return r.Kernel.Name + " " + r.Cmdline
}
