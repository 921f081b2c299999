package doclinks

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// module is this repository's module path: packages under it are parsed
// from their folder.
const module = "github.com/tcpconnect/tcpconnect/"

// receiverDir is the collector component's folder, holding its Config and
// the README whose table documents it.
var receiverDir = filepath.Join("..", "..", "tcpconnectreceiver")

// TestReceiverConfigTable checks that the receiver README's configuration
// table names every key of the receiver's Config (mapstructure tags, nested
// structs as dotted keys, the dns package's Config included) and no key
// that Config lacks.
func TestReceiverConfigTable(t *testing.T) {
	keys, err := configKeys(receiverDir, "Config")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) < 10 {
		t.Fatalf("found only %d config keys in %s: %v", len(keys), receiverDir, keys)
	}
	table, err := tableKeys(filepath.Join(receiverDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !slices.Contains(table, k) {
			t.Errorf("README.md's configuration table lacks %s", k)
		}
	}
	for _, k := range table {
		if !slices.Contains(keys, k) {
			t.Errorf("README.md's configuration table names %s, which Config does not have", k)
		}
	}
}

// TestConfigKeys checks configKeys on a small package of its own.
func TestConfigKeys(t *testing.T) {
	dir := t.TempDir()
	src := `package p

import "time"

type Config struct {
	Attach string ` + "`mapstructure:\"attach\"`" + `
	Batch  Batch  ` + "`mapstructure:\"batch\"`" + `
	Wait   time.Duration ` + "`mapstructure:\"wait\"`" + `
	hidden int
	_      struct{}
}

type Batch struct {
	MaxSize int ` + "`mapstructure:\"max_size\"`" + `
	Inner   struct {
		Deep bool ` + "`mapstructure:\"deep\"`" + `
	} ` + "`mapstructure:\"inner\"`" + `
}
`
	if err := os.WriteFile(filepath.Join(dir, "p.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := configKeys(dir, "Config")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"attach", "batch.inner.deep", "batch.max_size", "wait"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("configKeys = %v, want %v", got, want)
	}
}

// configKeys returns the sorted mapstructure keys of the struct type name in
// the Go package in dir, nested structs as dotted keys.
func configKeys(dir, name string) ([]string, error) {
	var keys []string
	err := walkStruct(dir, name, "", &keys)
	slices.Sort(keys)
	return keys, err
}

// walkStruct adds the keys of type name of the package in dir to keys.
func walkStruct(dir, name, prefix string, keys *[]string) error {
	types, imports, err := parsePackage(dir)
	if err != nil {
		return err
	}
	st, ok := types[name]
	if !ok {
		return &os.PathError{Op: "find type " + name, Path: dir, Err: os.ErrNotExist}
	}
	return walkFields(dir, st, prefix, types, imports, keys)
}

func walkFields(dir string, st *ast.StructType, prefix string, types map[string]*ast.StructType, imports map[string]string, keys *[]string) error {
	for _, f := range st.Fields.List {
		if f.Tag == nil {
			continue
		}
		tag, err := strconv.Unquote(f.Tag.Value)
		if err != nil {
			return err
		}
		key, _, _ := strings.Cut(reflect.StructTag(tag).Get("mapstructure"), ",")
		if key == "" || key == "-" {
			continue
		}
		key = prefix + key
		switch typ := f.Type.(type) {
		case *ast.StructType:
			if err := walkFields(dir, typ, key+".", types, imports, keys); err != nil {
				return err
			}
			continue
		case *ast.Ident:
			if inner, ok := types[typ.Name]; ok {
				if err := walkFields(dir, inner, key+".", types, imports, keys); err != nil {
					return err
				}
				continue
			}
		case *ast.SelectorExpr:
			if x, ok := typ.X.(*ast.Ident); ok {
				if path, ok := strings.CutPrefix(imports[x.Name], module); ok {
					if err := walkStruct(filepath.Join(dir, "..", filepath.FromSlash(path)), typ.Sel.Name, key+".", keys); err != nil {
						return err
					}
					continue
				}
			}
		}
		*keys = append(*keys, key)
	}
	return nil
}

// parsePackage returns the struct types of the non-test Go files in dir by
// name, and their imports by package name (the last path element unless
// renamed; the packages here are named after their folder).
func parsePackage(dir string) (map[string]*ast.StructType, map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, nil, err
	}
	types := map[string]*ast.StructType{}
	imports := map[string]string{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, nil, err
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			local := path[strings.LastIndex(path, "/")+1:]
			if imp.Name != nil {
				local = imp.Name.Name
			}
			imports[local] = path
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if ts, ok := n.(*ast.TypeSpec); ok {
				if st, ok := ts.Type.(*ast.StructType); ok {
					types[ts.Name.Name] = st
				}
			}
			return true
		})
	}
	if len(types) == 0 {
		return nil, nil, &os.PathError{Op: "parse Go package", Path: dir, Err: os.ErrNotExist}
	}
	return types, imports, nil
}

// fieldCell matches a backquoted key in a table row's first cell.
var fieldCell = regexp.MustCompile("`([a-z_.]+)`")

// tableKeys returns the keys the first table after the "## Configuration"
// heading of a README names in its first column.
func tableKeys(readme string) ([]string, error) {
	f, err := os.Open(readme)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var keys []string
	in, started := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## Configuration"
		case in && strings.HasPrefix(line, "| `"):
			started = true
			first, _, _ := strings.Cut(strings.TrimPrefix(line, "|"), "|")
			for _, m := range fieldCell.FindAllStringSubmatch(first, -1) {
				keys = append(keys, m[1])
			}
		case in && started && !strings.HasPrefix(line, "|"):
			in = false
		}
	}
	return keys, sc.Err()
}
