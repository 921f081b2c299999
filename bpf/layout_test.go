package bpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

func sizeofConnect(c *connectTcConnectEvent) uintptr { return unsafe.Sizeof(*c) }

// putConnect writes c's fields after the first three bytes of raw, in the C layout.
func putConnect(raw []byte, c connectTcConnectEvent) {
	c.Type, c.Family, c.Hook = raw[0], raw[1], raw[2]
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, &c)
	copy(raw, b.Bytes())
}

func sizeofOutcome(o *outcomeTcOutcomeEvent) uintptr { return unsafe.Sizeof(*o) }

// TestRecordLayout checks the Go decoder against the C layout that bpf2go
// generated from bpf/tcpconnect.h: every field of the record set to a value
// of its own (a field added in C and not set here fails), both address
// families, comm and exe full length and short, and each flag bit of enum
// tc_connect_flag as tcpconnect.h defines it, alone.
func TestRecordLayout(t *testing.T) {
	var c connectTcConnectEvent
	if got := int(sizeofConnect(&c)); got != event.ConnectSize {
		t.Fatalf("sizeof(tc_connect_event) = %d, decoder wants %d", got, event.ConnectSize)
	}
	base := connectTcConnectEvent{Type: event.TypeConnect, Family: event.AFInet6, Hook: uint8(event.HookCgroup),
		Dport: 443, TsNs: 11, CgroupId: 22, StartTimeNs: 33,
		Tgid: 44, Tid: 45, Ptgid: 46, Uid: 47, Gid: 48, Netns: 49,
		Daddr: [16]uint8{0x20, 0x01, 0x0d, 0xb8, 15: 1}, Flags: 1}
	copyC(base.Comm[:], "fifteen-chars-x")                   // TC_COMM_LEN - 1 and its NUL
	copyC(base.Exe[:], strings.Repeat("e", len(base.Exe)-1)) // TC_EXE_LEN - 1 and its NUL
	wantBase := event.Connect{Hook: event.HookCgroup, DstPort: 443, BootTimeNs: 11, CgroupID: 22, StartTimeNs: 33,
		TGID: 44, TID: 45, PPID: 46, UID: 47, GID: 48, NetNS: 49, Dst: netip.MustParseAddr("2001:db8::1"), Tracked: true}
	// Every field but the padding is set above.
	v := reflect.ValueOf(base)
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.Name != "_" && f.Name != "Pad1" && v.Field(i).IsZero() {
			t.Errorf("field %s of tc_connect_event not covered: give it a value here", f.Name)
		}
	}

	flags := headerFlags(t)
	type want struct {
		conn      event.Connect
		comm, exe string
	}
	tests := []struct {
		name string
		edit func(*connectTcConnectEvent, *want)
	}{
		{"every field", func(*connectTcConnectEvent, *want) {}},
		{"AF_INET", func(e *connectTcConnectEvent, w *want) {
			e.Family, e.Daddr = event.AFInet, [16]uint8{192, 0, 2, 7}
			w.conn.Dst = netip.MustParseAddr("192.0.2.7")
		}},
		{"v4-mapped AF_INET6", func(e *connectTcConnectEvent, w *want) {
			e.Daddr = [16]uint8{10: 0xff, 11: 0xff, 12: 192, 13: 0, 14: 2, 15: 8}
			w.conn.Dst = netip.MustParseAddr("192.0.2.8")
		}},
		{"short comm and exe", func(e *connectTcConnectEvent, w *want) {
			clear(e.Comm[:])
			clear(e.Exe[:])
			copyC(e.Comm[:], "nc")
			copyC(e.Exe[:], "busybox")
			w.comm, w.exe = "nc", "busybox"
		}},
		{"no flags", func(e *connectTcConnectEvent, w *want) { e.Flags, w.conn.Tracked = 0, false }},
	}
	for _, f := range flags {
		tests = append(tests, struct {
			name string
			edit func(*connectTcConnectEvent, *want)
		}{"flag " + f.name, func(e *connectTcConnectEvent, w *want) {
			e.Flags = f.bit
			w.conn.Tracked = false
			switch f.name {
			case "TC_CONNECT_TRACKED":
				w.conn.Tracked = true
			case "TC_CONNECT_AGG_FIRST":
				w.conn.AggFirst = true
			case "TC_CONNECT_AGG_OVERFLOW":
				w.conn.AggOverflow = true
			case "TC_CONNECT_AGG_WINDOW1":
				w.conn.AggWindow = 1
			default:
				t.Errorf("%s (bit %#x) in tcpconnect.h: the decoder and this test know no such flag", f.name, f.bit)
			}
		}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := base
			w := want{conn: wantBase, comm: "fifteen-chars-x", exe: strings.Repeat("e", len(base.Exe)-1)}
			tt.edit(&e, &w)
			raw := make([]byte, event.ConnectSize)
			raw[0], raw[1], raw[2] = e.Type, e.Family, e.Hook
			putConnect(raw, e)
			var got event.Connect
			if err := event.DecodeConnect(raw, &got); err != nil {
				t.Fatal(err)
			}
			if string(got.Comm()) != w.comm || string(got.Exe()) != w.exe {
				t.Errorf("comm %q exe %q, want %q %q", got.Comm(), got.Exe(), w.comm, w.exe)
			}
			// Every exported field (comm and exe are checked above).
			gv, wv := reflect.ValueOf(got), reflect.ValueOf(w.conn)
			for i := range gv.NumField() {
				if f := gv.Type().Field(i); f.IsExported() && !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
					t.Errorf("%s = %v, want %v", f.Name, gv.Field(i), wv.Field(i))
				}
			}
		})
	}
}

// copyC copies s into the C char array dst.
func copyC(dst []int8, s string) {
	for i := range len(s) {
		dst[i] = int8(s[i])
	}
}

// connectFlag is one bit of enum tc_connect_flag.
type connectFlag struct {
	name string
	bit  uint8
}

// headerFlags reads enum tc_connect_flag's bits from tcpconnect.h, the one
// definition the C programs use.
func headerFlags(t *testing.T) []connectFlag {
	t.Helper()
	src, err := os.ReadFile("tcpconnect.h")
	if err != nil {
		t.Fatal(err)
	}
	body, ok := strings.CutPrefix(string(src[bytes.Index(src, []byte("enum tc_connect_flag {")):]), "enum tc_connect_flag {")
	if !ok {
		t.Fatal("no enum tc_connect_flag in tcpconnect.h")
	}
	body, _, _ = strings.Cut(body, "};")
	var out []connectFlag
	for _, m := range regexp.MustCompile(`(TC_CONNECT_\w+)\s*=\s*1\s*<<\s*(\d+)`).FindAllStringSubmatch(body, -1) {
		shift, _ := strconv.Atoi(m[2])
		out = append(out, connectFlag{m[1], 1 << shift})
	}
	if len(out) == 0 {
		t.Fatal("no flags read from enum tc_connect_flag in tcpconnect.h")
	}
	return out
}
