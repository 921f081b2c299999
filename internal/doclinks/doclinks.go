// Package doclinks checks the repository's markdown: every relative link of
// every *.md file must name a file or folder that exists, and a link's
// #anchor must name a heading of the markdown file it points to (GitHub's
// heading ids). Links to other sites are not followed. Its tests also check
// that the receiver's README documents every key of the receiver's Config.
package doclinks

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

// Problem is one link that does not resolve.
type Problem struct {
	// File is the markdown file holding the link, relative to the root.
	File string
	// Line is the link's line in File, from 1.
	Line int
	// Target is the link as written.
	Target string
	// Reason says what is missing.
	Reason string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Target, p.Reason)
}

// skipDirs are folders whose markdown is not the project's own: build
// output, caches, version control.
var skipDirs = map[string]bool{"_build": true, ".cache": true, ".git": true, "node_modules": true}

// inlineLink matches [text](target) and ![alt](target); the target ends at
// the first space (a title may follow) or the closing parenthesis.
var inlineLink = regexp.MustCompile(`!?\[[^\]]*\]\(<?([^)\s>]+)>?(?:\s+"[^"]*")?\)`)

// codeSpan matches inline code, whose brackets are not links.
var codeSpan = regexp.MustCompile("`[^`]*`")

// Check reads every *.md file under root (but skipDirs and hidden folders)
// and returns the links that do not resolve, in file and line order.
func Check(root string) ([]Problem, error) {
	files, err := markdownFiles(root)
	if err != nil {
		return nil, err
	}
	anchors := map[string]map[string]bool{} // by absolute path, read once
	var problems []Problem
	for _, rel := range files {
		links, err := readLinks(filepath.Join(root, rel))
		if err != nil {
			return nil, err
		}
		for _, l := range links {
			if reason, err := resolve(root, rel, l.target, anchors); err != nil {
				return nil, err
			} else if reason != "" {
				problems = append(problems, Problem{File: rel, Line: l.line, Target: l.target, Reason: reason})
			}
		}
	}
	return problems, nil
}

// markdownFiles lists the *.md files under root, relative to it.
func markdownFiles(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (skipDirs[d.Name()] || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".md") {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list markdown under %s: %w", root, err)
	}
	return files, nil
}

type link struct {
	line   int
	target string
}

// readLinks returns the inline links of a markdown file outside fenced code
// blocks and code spans.
func readLinks(path string) ([]link, error) {
	var links []link
	err := scanMarkdown(path, func(n int, text string) {
		for _, m := range inlineLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(text, ""), -1) {
			links = append(links, link{line: n, target: m[1]})
		}
	}, nil)
	return links, err
}

// scanMarkdown calls text for each line outside fenced code blocks, and
// heading for each ATX heading (# to ######) with its text.
func scanMarkdown(path string, text func(n int, line string), heading func(title string)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	fence := ""
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		if text != nil {
			text(n, line)
		}
		if heading != nil && strings.HasPrefix(line, "#") {
			level := len(line) - len(strings.TrimLeft(line, "#"))
			if level <= 6 && len(line) > level && line[level] == ' ' {
				heading(strings.TrimSpace(line[level:]))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// resolve returns why target, a link in the file rel, does not resolve, or
// "" when it does or points to another site.
func resolve(root, rel, target string, anchors map[string]map[string]bool) (string, error) {
	if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
		return "", nil
	}
	path, anchor, _ := strings.Cut(target, "#")
	dest := filepath.Join(root, rel)
	if path != "" {
		if filepath.IsAbs(path) {
			return "an absolute path: links must be relative to the file", nil
		}
		dest = filepath.Join(filepath.Dir(dest), filepath.FromSlash(path))
		st, err := os.Stat(dest)
		if err != nil {
			return "no such file or folder", nil
		}
		if st.IsDir() {
			if anchor != "" {
				return "an anchor on a folder", nil
			}
			return "", nil
		}
	}
	if anchor == "" || !strings.HasSuffix(dest, ".md") {
		return "", nil
	}
	ids, ok := anchors[dest]
	if !ok {
		ids = map[string]bool{}
		seen := map[string]int{}
		err := scanMarkdown(dest, nil, func(title string) {
			id := headingID(title)
			if k := seen[id]; k > 0 {
				ids[fmt.Sprintf("%s-%d", id, k)] = true
			} else {
				ids[id] = true
			}
			seen[id]++
		})
		if err != nil {
			return "", err
		}
		anchors[dest] = ids
	}
	if !ids[anchor] {
		return "no heading with this id in " + filepath.Base(dest), nil
	}
	return "", nil
}

// mdLink matches a link inside a heading, whose id keeps only its text.
var mdLink = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)

// headingID is GitHub's id of a heading: lower-cased, letters, digits,
// spaces, hyphens and underscores kept, spaces turned into hyphens.
func headingID(title string) string {
	title = mdLink.ReplaceAllString(title, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
