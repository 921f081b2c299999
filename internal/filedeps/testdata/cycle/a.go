// Package cycle is filedeps' test input: a.go and b.go use each other (a
// type, a method, a field), c.go uses both and is used by none, and d.go
// and e.go use each other through a constant and a function only.
package cycle

// T is used by b.go.
type T struct{ F int }

// M is called by b.go.
func (T) M() int { return V }
