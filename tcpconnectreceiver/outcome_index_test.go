package tcpconnectreceiver

import (
	"math/rand/v2"
	"testing"
)

// TestWaitIndex checks the index against a Go map under random puts, gets
// and removes, with keys drawn from a small set so that probe runs collide,
// wrap around the table's end and are shifted back on removal.
func TestWaitIndex(t *testing.T) {
	tests := []struct {
		name     string
		size     int    // ring slots: the index holds at most this many keys
		keys     int    // distinct keys drawn from
		sameTID  bool   // every key has tid 7: only the boot time differs
		bootStep uint64 // boot times are multiples of this
		ops      int
	}{
		{name: "one slot", size: 1, keys: 3, bootStep: 1, ops: 2000},
		{name: "small dense", size: 8, keys: 12, bootStep: 1, ops: 20000},
		{name: "same tid, ns steps", size: 64, keys: 100, sameTID: true, bootStep: 1000, ops: 50000},
		{name: "default size", size: 8192, keys: 10000, bootStep: 37, ops: 200000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tt.size)))
			x := newWaitIndex(tt.size)
			model := map[waitKey]int{}
			key := func() waitKey {
				i := rng.IntN(tt.keys)
				tid := uint32(i % 5)
				if tt.sameTID {
					tid = 7
				}
				return waitKey{tid: tid, bootNs: uint64(i) * tt.bootStep}
			}
			for op := range tt.ops {
				k := key()
				switch r := rng.IntN(3); {
				case r == 0 && (len(model) < tt.size || hasKey(model, k)):
					slot := rng.IntN(tt.size)
					x.put(k, slot)
					model[k] = slot
				case r == 1:
					got, ok := x.get(k)
					want, wok := model[k]
					if ok != wok || got != want {
						t.Fatalf("op %d: get(%v) = %d, %v; want %d, %v", op, k, got, ok, want, wok)
					}
				default:
					got, ok := x.remove(k)
					want, wok := model[k]
					if ok != wok || got != want {
						t.Fatalf("op %d: remove(%v) = %d, %v; want %d, %v", op, k, got, ok, want, wok)
					}
					delete(model, k)
				}
				if x.len() != len(model) {
					t.Fatalf("op %d: len %d, want %d", op, x.len(), len(model))
				}
			}
			for k, want := range model {
				if got, ok := x.get(k); !ok || got != want {
					t.Fatalf("end: get(%v) = %d, %v; want %d, true", k, got, ok, want)
				}
			}
		})
	}
}

func hasKey(m map[waitKey]int, k waitKey) bool {
	_, ok := m[k]
	return ok
}
