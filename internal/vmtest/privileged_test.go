package vmtest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestPrivilegedTests: a test is privileged when it calls privtest.Require
// itself, in a closure, or through a function or method of its package,
// however deep; a test that calls none of those is not.
func TestPrivilegedTests(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a_test.go": `package p
import "testing"
func TestDirect(t *testing.T) { privtest.Require(t) }
func TestClosure(t *testing.T) { t.Run("x", func(t *testing.T) { privtest.Require(t) }) }
func TestHelper(t *testing.T) { openForTest(t) }
func TestMethod(t *testing.T) { var h harness; h.start(t) }
func TestPlain(t *testing.T) { privtest.SkipOrFail(t, "not a privilege gate"); helperPlain() }
func TestMain(m *testing.M) { privtest.Require(nil) }
`,
		"b_test.go": `package p
import "testing"
func openForTest(t *testing.T) { deeper(t) }
func deeper(t *testing.T) { privtest.Require(t) }
type harness struct{}
func (harness) start(t *testing.T) { openForTest(t) }
func helperPlain() {}
`,
		"c.go": "package p\nfunc notATest() { privtest.Require(nil) }\n",
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := PrivilegedTests(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"TestClosure", "TestDirect", "TestHelper", "TestMethod"}
	if !slices.Equal(got, want) {
		t.Errorf("PrivilegedTests = %v, want %v", got, want)
	}
}
