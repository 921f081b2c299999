package doclinks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRepositoryLinks checks the repository's own markdown.
func TestRepositoryLinks(t *testing.T) {
	problems, err := Check(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s", p)
	}
}

// TestCheck runs the checker on small trees, each with one kind of link.
func TestCheck(t *testing.T) {
	target := "# Title\n\n## Connect outcome: the rules\n\n```sh\n# not a heading\n```\n\n## Twice\n\n## Twice\n"
	tests := []struct {
		name string
		doc  string
		want []string // the targets reported, in order
	}{
		{"file exists", "[t](target.md)", nil},
		{"file missing", "see [t](missing.md).", []string{"missing.md"}},
		{"folder", "[d](sub/) and [d](sub)", nil},
		{"folder missing", "[d](nosub/)", []string{"nosub/"}},
		{"anchor", "[a](target.md#connect-outcome-the-rules)", nil},
		{"anchor missing", "[a](target.md#connect-outcome)", []string{"target.md#connect-outcome"}},
		{"duplicate heading", "[a](target.md#twice-1)", nil},
		{"heading in code is none", "[a](target.md#not-a-heading)", []string{"target.md#not-a-heading"}},
		{"own anchor", "# Here\n[a](#here) [b](#there)", []string{"#there"}},
		{"other sites", "[w](https://example.com/x.md) [m](mailto:a@b.c)", nil},
		{"code span", "`[x](missing.md)`", nil},
		{"code block", "```\n[x](missing.md)\n```", nil},
		{"title", `[t](target.md "Title") [u](gone.md "T")`, []string{"gone.md"}},
		{"image", "![i](img.png)", []string{"img.png"}},
		{"absolute", "[a](/etc/passwd)", []string{"/etc/passwd"}},
		{"non-markdown with anchor", "[s](code.go#L3)", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, body := range map[string]string{"target.md": target, "code.go": "package x\n", "sub/x.txt": "", "doc.md": tt.doc} {
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			problems, err := Check(root)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range problems {
				if p.File != "doc.md" {
					t.Errorf("problem in %s: %s", p.File, p)
				}
				got = append(got, p.Target)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("reported %q, want %q", got, tt.want)
			}
		})
	}
}

// TestHeadingID checks GitHub's ids for the kinds of headings the docs use.
func TestHeadingID(t *testing.T) {
	tests := []struct{ title, want string }{
		{"Tested kernels and CPUs", "tested-kernels-and-cpus"},
		{"Kernel time per connect: what the connecting process pays", "kernel-time-per-connect-what-the-connecting-process-pays"},
		{"GOGC, GOMEMLIMIT and the exporter: guidance", "gogc-gomemlimit-and-the-exporter-guidance"},
		{"make deploy-test", "make-deploy-test"},
		{"The `tcpconnect` receiver", "the-tcpconnect-receiver"},
		{"See [the docs](docs/x.md)", "see-the-docs"},
		{"snake_case name", "snake_case-name"},
	}
	for _, tt := range tests {
		if got := headingID(tt.title); got != tt.want {
			t.Errorf("headingID(%q) = %q, want %q", tt.title, got, tt.want)
		}
	}
}
