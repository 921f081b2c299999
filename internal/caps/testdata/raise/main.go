// Command raise prints the effective capability set before and after
// caps.RaiseEffective, for TestRaiseEffective (built without cgo, run as a
// non-root user from a binary with file capabilities).
package main

import (
	"fmt"
	"os"

	"github.com/tcpconnect/tcpconnect/internal/caps"
)

func main() {
	before, err := caps.Effective()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	after, err := caps.RaiseEffective()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Every thread, not only this one: the next check runs on another.
	done := make(chan caps.Set)
	go func() {
		s, _ := caps.Effective()
		done <- s
	}()
	fmt.Printf("before=%#x after=%#x other=%#x\n", uint64(before), uint64(after), uint64(<-done))
}
