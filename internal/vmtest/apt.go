package vmtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// AptSource is a Debian suite set that the host's apt configuration does not
// name (an older release, a foreign architecture). It is used through its own
// apt state folder (its own sources.list, package lists and cache), so the
// host's apt sources stay as they are.
type AptSource struct {
	// Name is the source's key in Sources and its state folder's name.
	Name string
	// Arch is the one architecture whose package lists are fetched.
	Arch string
	// Suites are the suites to list, each "debian/SUITE" (the host's Debian
	// archive URI) or "debian-security/SUITE" (the host's security archive).
	Suites []string
}

// Sources returns the apt sources that Kernel.Source names.
func Sources() map[string]AptSource {
	return map[string]AptSource{
		"bullseye-security": {Name: "bullseye-security", Arch: ArchAMD64, Suites: []string{"debian-security/bullseye-security"}},
		"bookworm-arm64": {Name: "bookworm-arm64", Arch: ArchARM64, Suites: []string{
			"debian/bookworm", "debian/bookworm-updates", "debian-security/bookworm-security",
		}},
	}
}

// debianKeyring verifies Debian's archives, bullseye's included.
const debianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// apt runs apt-get or apt-cache with the source's state folder.
type apt struct {
	src AptSource
	dir string // state folder: sources.list, lists/, cache/
}

// newApt prepares the state folder of src under cacheDir/apt and writes its
// sources.list from the host's Debian mirrors.
func newApt(cacheDir string, src AptSource) (*apt, error) {
	a := &apt{src: src, dir: filepath.Join(cacheDir, "apt", src.Name)}
	for _, d := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("apt source %s: %w", src.Name, err)
		}
	}
	mirrors, err := hostDebianMirrors()
	if err != nil {
		return nil, fmt.Errorf("apt source %s: %w", src.Name, err)
	}
	list, err := sourcesList(src, mirrors, fileExists(debianKeyring))
	if err != nil {
		return nil, fmt.Errorf("apt source %s: %w", src.Name, err)
	}
	if err := os.WriteFile(filepath.Join(a.dir, "sources.list"), []byte(list), 0o644); err != nil {
		return nil, fmt.Errorf("apt source %s: %w", src.Name, err)
	}
	return a, nil
}

// sourcesList renders the one-line sources.list of src.
func sourcesList(src AptSource, mirrors map[string]string, keyring bool) (string, error) {
	var b strings.Builder
	for _, s := range src.Suites {
		archive, suite, ok := strings.Cut(s, "/")
		uri := mirrors[archive]
		if !ok || uri == "" {
			return "", fmt.Errorf("suite %q: the host's apt sources name no %q archive", s, archive)
		}
		opts := "arch=" + src.Arch
		if keyring {
			opts += " signed-by=" + debianKeyring
		}
		fmt.Fprintf(&b, "deb [%s] %s %s main\n", opts, uri, suite)
	}
	return b.String(), nil
}

// options are the apt settings that point apt at the state folder. The
// source's architecture is added to the host's (APT::Architectures::=).
func (a *apt) options() []string {
	return []string{
		"-o", "Dir::Etc::sourcelist=" + filepath.Join(a.dir, "sources.list"),
		"-o", "Dir::Etc::sourceparts=-",
		"-o", "Dir::State::Lists=" + filepath.Join(a.dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		"-o", "APT::Architectures::=" + a.src.Arch,
		// The sandbox user (_apt) cannot write into a root-owned cache folder.
		"-o", "APT::Sandbox::User=root",
	}
}

// updatedMarker is written into the state folder after a successful update.
const updatedMarker = ".updated"

// update fetches the source's package lists, unless force is false and they
// were fetched before.
func (a *apt) update(ctx context.Context, force bool) error {
	marker := filepath.Join(a.dir, updatedMarker)
	if !force && fileExists(marker) {
		return nil
	}
	if err := runTool(ctx, a.dir, "apt-get", append([]string{"-q"}, append(a.options(), "update")...)...); err != nil {
		return fmt.Errorf("apt source %s: update: %w", a.src.Name, err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		return fmt.Errorf("apt source %s: %w", a.src.Name, err)
	}
	return nil
}

// download fetches spec (name:arch[=version]) into dir, updating the lists
// first when they were never fetched, and once more when the download fails
// (the lists may be older than the archive).
func (a *apt) download(ctx context.Context, dir, spec string) error {
	if err := a.update(ctx, false); err != nil {
		return err
	}
	args := append([]string{"-q"}, append(a.options(), "download", spec)...)
	err := runTool(ctx, dir, "apt-get", args...)
	if err == nil {
		return nil
	}
	if uerr := a.update(ctx, true); uerr != nil {
		return errors.Join(err, uerr)
	}
	return runTool(ctx, dir, "apt-get", args...)
}

// hostDebianMirrors reads the host's apt sources (one-line .list and deb822
// .sources files) and returns the URI of its Debian archive ("debian": a
// suite without a dash, such as bookworm) and of its security archive
// ("debian-security": a suite ending in -security). Only sources signed by
// (or assumed to be) Debian's archive keyring count, so a third-party
// repository is never taken for Debian's.
func hostDebianMirrors() (map[string]string, error) {
	files := []string{"/etc/apt/sources.list"}
	for _, pat := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	mirrors := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // a missing sources.list is normal with deb822 sources
		}
		var entries []aptEntry
		if strings.HasSuffix(f, ".sources") {
			entries = parseDeb822(string(data))
		} else {
			entries = parseOneLine(string(data))
		}
		for _, e := range entries {
			classifyMirror(e, mirrors)
		}
	}
	if mirrors["debian"] == "" && mirrors["debian-security"] == "" {
		return nil, errors.New("no Debian archive in the host's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d)")
	}
	return mirrors, nil
}

// aptEntry is one deb source of the host: its URIs, suites and keyring.
type aptEntry struct {
	URIs, Suites []string
	SignedBy     string
}

// classifyMirror records e's URI as the Debian or security archive.
func classifyMirror(e aptEntry, mirrors map[string]string) {
	if e.SignedBy != "" && !strings.Contains(e.SignedBy, "debian-archive-keyring") {
		return
	}
	for _, u := range e.URIs {
		u = strings.TrimRight(u, "/")
		for _, s := range e.Suites {
			key := ""
			switch {
			case strings.HasSuffix(s, "-security") && strings.HasSuffix(u, "/debian-security"):
				key = "debian-security"
			case !strings.Contains(s, "-") && strings.HasSuffix(u, "/debian"):
				key = "debian"
			}
			if key != "" && mirrors[key] == "" {
				mirrors[key] = u
			}
		}
	}
}

// parseOneLine parses "deb [opts] URI SUITE COMPONENT..." lines.
func parseOneLine(data string) []aptEntry {
	var out []aptEntry
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		e := aptEntry{}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 {
				opt := strings.Trim(f[0], "[]")
				if v, ok := strings.CutPrefix(opt, "signed-by="); ok {
					e.SignedBy = v
				}
				end := strings.HasSuffix(f[0], "]")
				f = f[1:]
				if end {
					break
				}
			}
		}
		if len(f) < 2 {
			continue
		}
		e.URIs, e.Suites = []string{f[0]}, []string{f[1]}
		out = append(out, e)
	}
	return out
}

// parseDeb822 parses the stanzas of a .sources file (Types, URIs, Suites,
// Signed-By; Enabled: no skips a stanza).
func parseDeb822(data string) []aptEntry {
	var out []aptEntry
	for stanza := range strings.SplitSeq(strings.ReplaceAll(data, "\r\n", "\n"), "\n\n") {
		fields := map[string]string{}
		for line := range strings.SplitSeq(stanza, "\n") {
			if strings.HasPrefix(line, "#") || strings.HasPrefix(line, " ") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if ok {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		out = append(out, aptEntry{URIs: strings.Fields(fields["uris"]), Suites: strings.Fields(fields["suites"]), SignedBy: fields["signed-by"]})
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
