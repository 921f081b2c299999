package vmtest

import (
	"fmt"
	"io"
	"path"
	"strings"
)

// cpioWriter writes an uncompressed cpio archive in the "newc" format, the
// one the kernel unpacks as initramfs. It creates missing parent folders and
// refuses a second entry for the same path. (The Go cpio package served here,
// github.com/cavaliergopher/cpio, does not write device numbers, which the
// /dev/console node needs.)
type cpioWriter struct {
	w     io.Writer
	ino   int
	names map[string]bool
	err   error
}

// File type bits of a cpio mode.
const (
	cpioDir     = 0o040000
	cpioReg     = 0o100000
	cpioSymlink = 0o120000
	cpioChar    = 0o020000
)

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, names: map[string]bool{}}
}

// header writes one entry's header and name. name is relative, without a
// leading slash.
func (c *cpioWriter) header(name string, mode uint32, size int64, nlink, rdevMajor, rdevMinor int) {
	if c.err != nil {
		return
	}
	c.ino++
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, pad4(int64(len(buf))))...)
	_, c.err = c.w.Write(buf)
}

func pad4(n int64) int64 { return (4 - n%4) % 4 }

// clean turns a guest path into an archive name and records it.
func (c *cpioWriter) clean(p string) (string, error) {
	name := strings.TrimPrefix(path.Clean("/"+p), "/")
	if name == "" {
		return "", fmt.Errorf("cpio: empty path %q", p)
	}
	if c.names[name] {
		return "", fmt.Errorf("cpio: duplicate entry /%s", name)
	}
	if dir := path.Dir(name); dir != "." && !c.names[dir] {
		c.Dir(dir)
	}
	c.names[name] = true
	return name, nil
}

// Dir adds a folder (and its missing parents); an existing folder is fine.
func (c *cpioWriter) Dir(p string) {
	name := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c.err != nil || name == "" || c.names[name] {
		return
	}
	if name, c.err = c.clean(name); c.err == nil {
		c.header(name, cpioDir|0o755, 0, 2, 0, 0)
	}
}

// File adds a regular file with size bytes read from r.
func (c *cpioWriter) File(p string, perm uint32, size int64, r io.Reader) {
	c.entry(p, cpioReg|perm&0o7777, size, r)
}

// Symlink adds a symbolic link p pointing to target.
func (c *cpioWriter) Symlink(p, target string) {
	c.entry(p, cpioSymlink|0o777, int64(len(target)), strings.NewReader(target))
}

func (c *cpioWriter) entry(p string, mode uint32, size int64, r io.Reader) {
	if c.err != nil {
		return
	}
	name, err := c.clean(p)
	if err != nil {
		c.err = err
		return
	}
	c.header(name, mode, size, 1, 0, 0)
	if c.err != nil {
		return
	}
	n, err := io.Copy(c.w, io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("short read: %d of %d bytes", n, size)
	}
	if err != nil {
		c.err = fmt.Errorf("cpio: write /%s: %w", name, err)
		return
	}
	_, c.err = c.w.Write(make([]byte, pad4(size)))
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(p string, perm uint32, major, minor int) {
	if c.err != nil {
		return
	}
	name, err := c.clean(p)
	if err != nil {
		c.err = err
		return
	}
	c.header(name, cpioChar|perm&0o7777, 0, 1, major, minor)
}

// Close writes the trailer and returns the first error met.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0, 1, 0, 0)
	return c.err
}
