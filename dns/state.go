package dns

// The state file: the cache written to disk and read back, so that names
// survive a restart of the collector (a DaemonSet rollout, an upgrade).
//
// Format, little endian, version 1:
//
//	magic    [8]byte "TCDNSST\n"
//	version  uint32  stateVersion
//	boot     uint8 length, then the kernel's boot id (names are scoped
//	         to network namespace inode numbers, which mean nothing after
//	         a reboot)
//	entries  uint32 count, then per entry, least recently used first:
//	         addr [16]byte, netns uint32, tgid uint32, cgroup uint64,
//	         names uint8, then per name, newest resolution first:
//	         learned int64, expires int64 (Unix ns), length uint8, bytes
//	crc      uint32  CRC-32C of everything before it
//
// A file that is short, fails its checksum, has another magic, version or
// boot id, or does not parse exactly is refused whole; it changes nothing.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"
)

const (
	stateMagic   = "TCDNSST\n"
	stateVersion = 1
	// MaxStateBytes bounds a state file, read or written: far above what
	// the default cache takes (65536 entries of a few names: a few MiB).
	MaxStateBytes = 256 << 20
	// stateEntryFixed is an entry's size without its names.
	stateEntryFixed = 16 + 4 + 4 + 8 + 1
	// stateNameFixed is a name's size without its bytes.
	stateNameFixed = 8 + 8 + 1
)

// Errors of [Correlator.LoadState] and [ReadStateFile], wrapped with detail.
var (
	// ErrStateCorrupt: the file is truncated, fails its checksum or does
	// not parse.
	ErrStateCorrupt = errors.New("dns state file corrupt or truncated")
	// ErrStateVersion: the file is not a state file of this version.
	ErrStateVersion = errors.New("dns state file of another format or version")
	// ErrStateBoot: the file was written before the last reboot.
	ErrStateBoot = errors.New("dns state file from another boot")
	// ErrStateTooLarge: the file is larger than MaxStateBytes.
	ErrStateTooLarge = errors.New("dns state file too large")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// StateStats reports what [Correlator.LoadState] did.
type StateStats struct {
	// Entries is the number of (IP, scope) entries restored.
	Entries int
	// Names is the number of names restored.
	Names int
	// Skipped counts the names not restored: expired, invalid (not
	// printable ASCII, empty, upper case), or of an entry without a
	// network namespace.
	Skipped int
}

// AppendState appends the cache's unexpired names at now, in the state
// file format, to dst and returns the extended slice. boot is the kernel's
// boot id (/proc/sys/kernel/random/boot_id). The result is bounded by the
// cache's size: at most max_entries entries of max_names_per_ip names.
func (c *Correlator) AppendState(dst []byte, boot string, now time.Time) []byte {
	return c.cache.appendState(dst, boot, now.UnixNano())
}

// LoadState restores the names of a state file (see [Correlator.AppendState])
// into the cache, skipping those expired at now. Remaining TTLs and the
// time each name was learned are kept (a name's age counts from its
// original answer); TTLs are capped at now + max_ttl. A file that is
// corrupt, truncated, of another version or of another boot is refused
// whole with an error wrapping ErrStateCorrupt, ErrStateVersion or
// ErrStateBoot, and the cache is left as it was.
func (c *Correlator) LoadState(data []byte, boot string, now time.Time) (StateStats, error) {
	return c.cache.loadState(data, boot, now.UnixNano())
}

func (c *Cache) appendState(dst []byte, boot string, at int64) []byte {
	start := len(dst)
	dst = append(dst, stateMagic...)
	dst = binary.LittleEndian.AppendUint32(dst, stateVersion)
	boot = boot[:min(len(boot), 255)]
	dst = append(dst, byte(len(boot)))
	dst = append(dst, boot...)
	countAt := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, 0)

	order := make([]int32, 0, c.live)
	for i := range c.entries {
		if e := &c.entries[i]; e.live() {
			if _, ok := c.newest(e, at); ok {
				order = append(order, int32(i))
			}
		}
	}
	slices.SortFunc(order, func(a, b int32) int {
		ua, ub := c.entries[a].used, c.entries[b].used
		switch {
		case ua < ub:
			return -1
		case ua > ub:
			return 1
		}
		return 0
	})
	for _, i := range order {
		e := &c.entries[i]
		dst = append(dst, e.addr[:]...)
		dst = binary.LittleEndian.AppendUint32(dst, c.netns(i))
		dst = binary.LittleEndian.AppendUint32(dst, e.tgid)
		dst = binary.LittleEndian.AppendUint64(dst, e.cgroup())
		nAt := len(dst)
		dst = append(dst, 0)
		n := 0
		for j := e.names; j != none; j = c.slots[j].next {
			s := &c.slots[j]
			if s.expires <= at {
				continue
			}
			name := c.names.str(s.name)
			dst = binary.LittleEndian.AppendUint64(dst, uint64(s.learned))
			dst = binary.LittleEndian.AppendUint64(dst, uint64(s.expires))
			dst = append(dst, byte(len(name)))
			dst = append(dst, name...)
			n++
		}
		dst[nAt] = byte(n)
	}
	binary.LittleEndian.PutUint32(dst[countAt:], uint32(len(order)))
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// stateName is one name of a state entry.
type stateName struct {
	learned, expires int64
	name             []byte
}

// stateEntry is one decoded entry of a state file.
type stateEntry struct {
	addr  [16]byte
	scope Scope
	names []stateName // newest first
}

func (c *Cache) loadState(data []byte, boot string, at int64) (StateStats, error) {
	var st StateStats
	body, err := stateBody(data, boot)
	if err != nil {
		return st, err
	}
	// Check the whole file before the first insert: refused means
	// unchanged.
	if err := walkState(body, func(*stateEntry) {}); err != nil {
		return st, err
	}
	var chain [1][]byte
	err = walkState(body, func(e *stateEntry) {
		ip := netip.AddrFrom16(e.addr).Unmap()
		restored := 0
		for k := len(e.names) - 1; k >= 0; k-- { // oldest first: Insert puts the newest in front
			n := &e.names[k]
			if e.scope.NetNS == 0 || n.expires <= at || !validStateName(n.name) {
				st.Skipped++
				continue
			}
			chain[0] = n.name
			learned := min(n.learned, at)
			c.insert(ip, e.scope, chain[:], at, learned, min(n.expires, at+c.maxTTL))
			restored++
		}
		if restored > 0 {
			st.Entries++
			st.Names += restored
		}
	})
	return st, err
}

// stateBody checks data's checksum, magic, version and boot id and returns
// the entries part (count and entries).
func stateBody(data []byte, boot string) ([]byte, error) {
	if len(data) < len(stateMagic)+4 {
		return nil, fmt.Errorf("%w: %d bytes", ErrStateCorrupt, len(data))
	}
	if string(data[:len(stateMagic)]) != stateMagic {
		return nil, fmt.Errorf("%w: magic %q", ErrStateVersion, data[:len(stateMagic)])
	}
	if v := binary.LittleEndian.Uint32(data[len(stateMagic):]); v != stateVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrStateVersion, v, stateVersion)
	}
	if len(data) < len(stateMagic)+4+1+4+4 {
		return nil, fmt.Errorf("%w: %d bytes", ErrStateCorrupt, len(data))
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return nil, fmt.Errorf("%w: checksum %08x, want %08x", ErrStateCorrupt, got, sum)
	}
	body = body[len(stateMagic)+4:]
	bl := int(body[0])
	if 1+bl > len(body) {
		return nil, fmt.Errorf("%w: boot id runs past the end", ErrStateCorrupt)
	}
	if got := string(body[1 : 1+bl]); got != boot[:min(len(boot), 255)] {
		return nil, fmt.Errorf("%w: written in boot %q, this is %q", ErrStateBoot, got, boot)
	}
	return body[1+bl:], nil
}

// walkState calls fn with each entry of body (count, entries), in file
// order. The entry and its names are reused between calls. It returns an
// error wrapping ErrStateCorrupt when body does not parse exactly.
func walkState(body []byte, fn func(*stateEntry)) error {
	if len(body) < 4 {
		return fmt.Errorf("%w: no entry count", ErrStateCorrupt)
	}
	count := int(binary.LittleEndian.Uint32(body))
	off := 4
	var e stateEntry
	for i := range count {
		if off+stateEntryFixed > len(body) {
			return fmt.Errorf("%w: entry %d of %d runs past the end", ErrStateCorrupt, i, count)
		}
		copy(e.addr[:], body[off:])
		e.scope = Scope{
			NetNS:    binary.LittleEndian.Uint32(body[off+16:]),
			TGID:     binary.LittleEndian.Uint32(body[off+20:]),
			CgroupID: binary.LittleEndian.Uint64(body[off+24:]),
		}
		n := int(body[off+32])
		off += stateEntryFixed
		e.names = e.names[:0]
		for range n {
			if off+stateNameFixed > len(body) {
				return fmt.Errorf("%w: a name of entry %d runs past the end", ErrStateCorrupt, i)
			}
			sn := stateName{
				learned: int64(binary.LittleEndian.Uint64(body[off:])),
				expires: int64(binary.LittleEndian.Uint64(body[off+8:])),
			}
			l := int(body[off+16])
			off += stateNameFixed
			if off+l > len(body) {
				return fmt.Errorf("%w: a name of entry %d runs past the end", ErrStateCorrupt, i)
			}
			sn.name = body[off : off+l]
			off += l
			e.names = append(e.names, sn)
		}
		fn(&e)
	}
	if off != len(body) {
		return fmt.Errorf("%w: %d bytes after the last entry", ErrStateCorrupt, len(body)-off)
	}
	return nil
}

// validStateName reports whether n is a name the Parser could have
// produced: 1 to 255 bytes of printable ASCII, no upper case.
func validStateName(n []byte) bool {
	if len(n) == 0 || len(n) > maxNameLen {
		return false
	}
	for _, c := range n {
		if c < 0x21 || c > 0x7e || c-'A' < 26 {
			return false
		}
	}
	return true
}

// WriteStateFile replaces the file at path with data atomically: data goes
// to a temporary file in the same directory, which is synced and renamed
// over path, so a crash leaves the old file or the new one, never a part.
// The file is readable by its owner only.
func WriteStateFile(path string, data []byte) error {
	if len(data) > MaxStateBytes {
		return fmt.Errorf("write dns state %s: %w: %d bytes, at most %d", path, ErrStateTooLarge, len(data), MaxStateBytes)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write dns state %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write dns state %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename is durable once the directory is
		_ = d.Close()
	}
	return nil
}

// ReadStateFile reads the state file at path, at most MaxStateBytes; a
// missing file is an error wrapping fs.ErrNotExist.
func ReadStateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read dns state: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxStateBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read dns state %s: %w", path, err)
	}
	if len(data) > MaxStateBytes {
		return nil, fmt.Errorf("read dns state %s: %w: more than %d bytes", path, ErrStateTooLarge, MaxStateBytes)
	}
	return data, nil
}
