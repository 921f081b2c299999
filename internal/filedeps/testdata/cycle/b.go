package cycle

// V is used by a.go.
var V = 1

func useT(t T) int { return t.M() + t.F }
