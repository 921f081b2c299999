package vmtest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
)

// PrivilegedTests returns the names of the top-level tests in the Go
// package in dir (its _test.go files) that call privtest.Require, directly
// or through the package's own functions and methods (closures included):
// the tests that need a kernel, which the VM lists must hold. A method is
// followed by its name alone, so a test may be counted that is not (never
// one left out).
func PrivilegedTests(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no _test.go files in %s", dir)
	}
	fset := token.NewFileSet()
	calls := map[string]map[string]bool{} // function or method name -> names it calls
	direct := map[string]bool{}           // calls privtest.Require itself
	var tests []string
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", f, err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			name := fn.Name.Name
			if fn.Recv == nil && strings.HasPrefix(name, "Test") && name != "TestMain" {
				tests = append(tests, name)
			}
			if calls[name] == nil {
				calls[name] = map[string]bool{}
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				switch f := call.Fun.(type) {
				case *ast.Ident:
					calls[name][f.Name] = true
				case *ast.SelectorExpr:
					if x, ok := f.X.(*ast.Ident); ok && x.Name == "privtest" && f.Sel.Name == "Require" {
						direct[name] = true
					}
					calls[name][f.Sel.Name] = true
				}
				return true
			})
		}
	}
	// Spread "calls Require" from callee to caller until nothing changes.
	for changed := true; changed; {
		changed = false
		for name, callees := range calls {
			if direct[name] {
				continue
			}
			for c := range callees {
				if direct[c] {
					direct[name], changed = true, true
					break
				}
			}
		}
	}
	var out []string
	for _, t := range tests {
		if direct[t] {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out, nil
}
