package vmtest

import (
	"debug/elf"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func TestHostMirrorParsing(t *testing.T) {
	const deb822 = `Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: https://vendor.example/debian
Suites: stable
Components: main
Signed-By: /usr/share/keyrings/vendor.gpg

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: trixie
Components: main
`
	const oneLine = `# comment
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://one.example/debian/ bookworm main
deb http://one.example/debian-security bookworm-security main contrib
deb-src http://src.example/debian bookworm main
deb [signed-by=/etc/vendor.gpg] http://vendor.example/debian bookworm main
`
	tests := []struct {
		name    string
		entries []aptEntry
		want    map[string]string
	}{
		{"deb822", parseDeb822(deb822), map[string]string{"debian": "http://mirror.example/debian", "debian-security": "http://mirror.example/debian-security"}},
		{"one-line", parseOneLine(oneLine), map[string]string{"debian": "http://one.example/debian", "debian-security": "http://one.example/debian-security"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]string{}
			for _, e := range tt.entries {
				classifyMirror(e, got)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("mirrors = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSourcesList(t *testing.T) {
	mirrors := map[string]string{"debian": "http://m/debian", "debian-security": "http://m/debian-security"}
	tests := []struct {
		name    string
		src     AptSource
		keyring bool
		want    string
		wantErr bool
	}{
		{name: "bullseye", src: Sources()["bullseye-security"], keyring: true,
			want: "deb [arch=amd64 signed-by=" + debianKeyring + "] http://m/debian-security bullseye-security main\n"},
		{name: "arm64", src: Sources()["bookworm-arm64"],
			want: "deb [arch=arm64] http://m/debian bookworm main\ndeb [arch=arm64] http://m/debian bookworm-updates main\ndeb [arch=arm64] http://m/debian-security bookworm-security main\n"},
		{name: "unknown archive", src: AptSource{Arch: "amd64", Suites: []string{"ports/sid"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sourcesList(tt.src, mirrors, tt.keyring)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("sourcesList = %q, %v; want %q (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestKernelSources(t *testing.T) {
	for _, k := range Kernels() {
		if _, ok := Sources()[k.Source]; k.Source != "" && !ok {
			t.Errorf("kernel %s: unknown apt source %q", k.Name, k.Source)
		}
		if _, ok := elfMachines[k.arch()]; !ok {
			t.Errorf("kernel %s: unsupported architecture %q", k.Name, k.arch())
		}
		if src, ok := Sources()[k.Source]; ok && src.Arch != k.arch() {
			t.Errorf("kernel %s (%s) from source %s of %s", k.Name, k.arch(), k.Source, src.Arch)
		}
	}
}

func TestCheckBinary(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(text, []byte("not ELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := ArchARM64
	if runtime.GOARCH == ArchARM64 {
		other = ArchAMD64
	}
	// Under -race (cgo) the test binary itself is dynamically linked, which
	// the guest cannot run: then that is the error to expect.
	ownErr := ""
	if f, err := elf.Open(self); err != nil {
		t.Fatal(err)
	} else {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				ownErr = "dynamically linked"
			}
		}
		f.Close()
	}
	tests := []struct {
		name, file, arch, wantErr string
	}{
		{"own arch", self, runtime.GOARCH, ownErr},
		{"other arch", self, other, "GOARCH=" + other},
		{"not ELF", text, other, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkBinary(tt.file, tt.arch)
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("checkBinary = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}
