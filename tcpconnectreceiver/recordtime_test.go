package tcpconnectreceiver

import (
	"testing"
	"time"
)

// TestRecordTime checks which records share a read time: those within the
// ring bytes that were there when the clock was read, at most clockEvery.
func TestRecordTime(t *testing.T) {
	const size = 160 // a connect record: 168 bytes in the ring
	slot := ringRecordBytes(size)
	tests := []struct {
		name      string
		remaining []int  // rec.Remaining after each read
		fresh     []bool // whether each read reads the clock
	}{
		{"ring empty after each", []int{0, 0, 0}, []bool{true, true, true}},
		{"two more were there", []int{2 * slot, slot, 0, 0}, []bool{true, false, false, true}},
		{"a later one was not", []int{slot, 5 * slot, 4 * slot, 3 * slot}, []bool{true, false, true, false}},
		{"at most clockEvery share", make([]int, clockEvery+1), nil},
	}
	tests[3].fresh = make([]bool, clockEvery+1)
	for i := range tests[3].remaining {
		tests[3].remaining[i] = 1 << 20
	}
	tests[3].fresh[0], tests[3].fresh[clockEvery] = true, true
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := &reader{clock: time.Now()}
			rd.rec.RawSample = make([]byte, size)
			var last time.Time
			for i, r := range tt.remaining {
				rd.rec.Remaining = r
				prev := last
				last = rd.recordTime()
				fresh := rd.readLeft == clockEvery-1
				if fresh != tt.fresh[i] {
					t.Errorf("read %d: clock read %v, want %v", i, fresh, tt.fresh[i])
				}
				if !fresh && !last.Equal(prev) {
					t.Errorf("read %d shares no time: %v, before %v", i, last, prev)
				}
			}
		})
	}
}
