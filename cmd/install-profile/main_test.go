package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstall(t *testing.T) {
	const profile = `{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}`
	tests := []struct {
		name    string
		src     string // content of SRC; "" leaves SRC missing
		dstDir  func(t *testing.T, dir string) string
		wantErr string // substring of the error; "" for success
	}{
		{name: "writes", src: profile, dstDir: func(t *testing.T, dir string) string { return dir }},
		{name: "replaces", src: profile, dstDir: func(t *testing.T, dir string) string {
			if err := os.WriteFile(filepath.Join(dir, "p.json"), []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{name: "missing source", dstDir: func(t *testing.T, dir string) string { return dir }, wantErr: "src.json"},
		{name: "not JSON", src: "defaultAction: x", dstDir: func(t *testing.T, dir string) string { return dir }, wantErr: "is not a JSON object"},
		{name: "no directory", src: profile, dstDir: func(t *testing.T, dir string) string { return filepath.Join(dir, "absent") }, wantErr: "cannot write the seccomp profile"},
		{name: "read-only directory", src: profile, dstDir: func(t *testing.T, dir string) string {
			ro := filepath.Join(dir, "ro")
			if err := os.Mkdir(ro, 0o555); err != nil {
				t.Fatal(err)
			}
			if os.Geteuid() == 0 {
				// root writes anyway: a file where the directory should be.
				if err := os.Remove(ro); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(ro, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			return ro
		}, wantErr: "cannot write the seccomp profile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "src.json")
			if tt.src != "" {
				if err := os.WriteFile(src, []byte(tt.src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			dst := filepath.Join(tt.dstDir(t, dir), "p.json")
			err := install(src, dst)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("install: %v, want an error with %q", err, tt.wantErr)
				}
				if strings.Contains(tt.wantErr, "cannot write") && !strings.Contains(err.Error(), dst) {
					t.Errorf("install: %v does not name %s", err, dst)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dst)
			if err != nil || string(got) != profile {
				t.Fatalf("%s holds %q (%v), want the profile", dst, got, err)
			}
			if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o644 {
				t.Errorf("mode %v, want 0644", fi.Mode().Perm())
			}
			left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), ".p.json.*"))
			if len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}
