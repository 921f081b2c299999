package tcpconnectreceiver

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// Flags of a first-bytes record (TC_FB_LAST, TC_FB_CLOSED).
const (
	fbFlagLast   = 1
	fbFlagClosed = 2
)

// fbRaw encodes a first-bytes record of connect (tid, bootNs): data at
// offset of want bytes in all, with flags.
func fbRaw(tid uint32, bootNs uint64, flags uint8, offset, want uint32, data []byte) []byte {
	b := make([]byte, event.FirstBytesSize)
	b[0], b[1] = event.TypeFirstBytes, flags
	le := binary.LittleEndian
	le.PutUint16(b[2:], uint16(len(data)))
	le.PutUint32(b[4:], tid)
	le.PutUint64(b[8:], bootNs)
	le.PutUint32(b[16:], offset)
	le.PutUint32(b[20:], want)
	copy(b[event.FirstBytesHeaderSize:], data)
	return b
}

// fbPieces splits first bytes b into records of at most chunk bytes (at
// most event.FirstBytesChunk), as the kernel writes them from segments of
// that size, the last one flagged.
func fbPieces(tid uint32, bootNs uint64, b []byte, chunk int) [][]byte {
	var raws [][]byte
	chunk = min(chunk, event.FirstBytesChunk)
	for off := 0; off < len(b); off += chunk {
		end := min(off+chunk, len(b))
		var flags uint8
		if end == len(b) {
			flags = fbFlagLast
		}
		raws = append(raws, fbRaw(tid, bootNs, flags, uint32(off), uint32(len(b)), b[off:end]))
	}
	return raws
}

// writeCatcher is a net.Conn that keeps the first write and fails every
// read: a TLS client handshake on it writes its ClientHello and stops.
type writeCatcher struct {
	net.Conn // nil: only the methods below are called
	first    []byte
}

func (w *writeCatcher) Write(b []byte) (int, error) {
	if w.first == nil {
		w.first = append([]byte(nil), b...)
	}
	return len(b), nil
}
func (w *writeCatcher) Read([]byte) (int, error)               { return 0, errors.New("no server") }
func (w *writeCatcher) Close() error                           { return nil }
func (w *writeCatcher) SetDeadline(time.Time) error            { return nil }
func (w *writeCatcher) SetReadDeadline(time.Time) error        { return nil }
func (w *writeCatcher) SetWriteDeadline(time.Time) error       { return nil }
func (w *writeCatcher) LocalAddr() net.Addr                    { return &net.TCPAddr{} }
func (w *writeCatcher) RemoteAddr() net.Addr                   { return &net.TCPAddr{} }
func (w *writeCatcher) SetKeepAlive(bool) error                { return nil }
func (w *writeCatcher) SetKeepAlivePeriod(time.Duration) error { return nil }

// clientHello returns the ClientHello Go's crypto/tls client sends for
// serverName offering alpn (its default key shares: post-quantum hybrid
// first, so it is larger than one first-bytes chunk).
func clientHello(t testing.TB, serverName string, alpn ...string) []byte {
	t.Helper()
	w := &writeCatcher{}
	c := tls.Client(w, &tls.Config{ServerName: serverName, NextProtos: alpn, InsecureSkipVerify: serverName == ""}) // never connects
	if err := c.Handshake(); err == nil {
		t.Fatal("handshake without a server succeeded")
	}
	if len(w.first) == 0 {
		t.Fatal("the TLS client wrote nothing")
	}
	return w.first
}
