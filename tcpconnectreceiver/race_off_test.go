//go:build !race

package tcpconnectreceiver

// raceEnabled reports whether the test binary was built with -race, whose
// instrumentation allocates on its own.
const raceEnabled = false
