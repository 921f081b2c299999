package tcpconnectreceiver

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/event"
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

// TestOutcomeWaitModel checks the wait queue (recent slots scanned, older
// ones indexed) against a plain list under random pushes, outcomes in any
// order, unknown outcomes and pops of the front (sent or expired): every
// outcome finds its waiting record and no other, and the index holds
// exactly the waiting records older than the recent ones.
func TestOutcomeWaitModel(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		spread int // outcomes come for one of the newest spread waiting records
		ops    int
	}{
		{"one slot", 1, 1, 2000},
		{"outcome next", 64, 1, 20000},
		{"within recent", 64, maxRecent, 20000},
		{"beyond recent", 64, 40, 50000},
		{"queue full often", 16, 16, 50000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(2, uint64(tt.size*tt.spread)))
			q := newOutcomeWait(tt.size, time.Second)
			type entry struct {
				key  waitKey
				done bool
			}
			var model []entry // the slots taken, front first
			var next uint64
			for op := range tt.ops {
				switch r := rng.IntN(10); {
				case r < 4: // a connect: the front goes first when full
					if q.full() {
						q.pop()
						model = model[1:]
					}
					next++
					c := event.Connect{TID: uint32(next % 5), BootTimeNs: next}
					q.push(&c, nil, time.Time{}, time.Time{})
					model = append(model, entry{key: waitKey{c.TID, c.BootTimeNs}})
				case r < 8: // an outcome of a recent waiting record, or unknown
					var waiting []int
					for i := len(model) - 1; i >= 0 && len(waiting) < tt.spread; i-- {
						if !model[i].done {
							waiting = append(waiting, i)
						}
					}
					k := waitKey{tid: 9, bootNs: next + 1} // no such connect
					want := -1
					if len(waiting) > 0 && rng.IntN(8) > 0 {
						want = waiting[rng.IntN(len(waiting))]
						k = model[want].key
					}
					s := q.take(&event.Outcome{TID: k.tid, ConnectBootNs: k.bootNs})
					switch {
					case want < 0 && s != nil:
						t.Fatalf("op %d: unknown outcome %v took the record of %v", op, k, waitKey{s.conn.TID, s.conn.BootTimeNs})
					case want >= 0 && (s == nil || s.conn.TID != k.tid || s.conn.BootTimeNs != k.bootNs):
						t.Fatalf("op %d: outcome %v took %+v", op, k, s)
					case want >= 0:
						model[want].done = true
					}
				default: // the front goes out (sent, or waited max_wait)
					if len(model) > 0 {
						if f := q.front(); f.done != model[0].done || f.conn.BootTimeNs != model[0].key.bootNs {
							t.Fatalf("op %d: front %+v, want %+v", op, f, model[0])
						}
						q.pop()
						model = model[1:]
					}
				}
				indexed := 0
				for i := range len(model) - q.recent {
					if !model[i].done {
						indexed++
					}
				}
				if q.len() != len(model) || q.index.len() != indexed || q.recent > maxRecent || q.recent > q.n {
					t.Fatalf("op %d: %d slots (want %d), %d recent, %d indexed (want %d)", op, q.len(), len(model), q.recent, q.index.len(), indexed)
				}
			}
		})
	}
}

// BenchmarkOutcomeWait measures the wait queue per connect when its outcome
// comes next (a storm of local connects), or after 32 later connects.
func BenchmarkOutcomeWait(b *testing.B) {
	for _, lag := range []int{0, 32} {
		b.Run(map[int]string{0: "next", 32: "lag32"}[lag], func(b *testing.B) {
			q := newOutcomeWait(8192, time.Second)
			var c event.Connect
			var o event.Outcome
			for i := 0; b.Loop(); i++ {
				c.TID, c.BootTimeNs = uint32(i%7), uint64(i)
				q.push(&c, nil, time.Time{}, time.Time{})
				if i >= lag {
					o.TID, o.ConnectBootNs = uint32((i-lag)%7), uint64(i-lag)
					if q.take(&o) == nil {
						b.Fatal("outcome not matched")
					}
				}
				for f := q.front(); f != nil && f.done; f = q.front() {
					q.pop()
				}
			}
		})
	}
}
