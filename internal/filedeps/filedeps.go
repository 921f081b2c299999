// Package filedeps finds the files of a Go package that use each other in
// a cycle: a package's files should use each other one way, from its entry
// points down to its helpers (issue 21), and a cycle is where that broke.
package filedeps

import (
	"fmt"
	"go/ast"
	"go/types"
	"path/filepath"
	"slices"
	"sort"

	"golang.org/x/tools/go/packages"
)

// Uses maps a file (base name) to the files it uses, each with the names it
// uses there.
type Uses map[string]map[string][]string

// Load type-checks the package pattern names, from dir, and returns the
// uses between its non-test, non-generated files: of a package-level
// name, a method or a field declared in another of its files.
func Load(dir, pattern string) (Uses, error) {
	cfg := &packages.Config{Dir: dir, Mode: packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo}
	pkgs, err := packages.Load(cfg, pattern)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", pattern, err)
	}
	if len(pkgs) != 1 {
		return nil, fmt.Errorf("load %s: %d packages, want 1", pattern, len(pkgs))
	}
	p := pkgs[0]
	if len(p.Errors) > 0 {
		return nil, fmt.Errorf("load %s: %v", pattern, p.Errors[0])
	}
	uses := Uses{}
	for _, f := range p.Syntax {
		if ast.IsGenerated(f) {
			continue
		}
		from := filepath.Base(p.Fset.File(f.Pos()).Name())
		uses[from] = map[string][]string{}
		ast.Inspect(f, func(n ast.Node) bool {
			id, ok := n.(*ast.Ident)
			if !ok {
				return true
			}
			obj := p.TypesInfo.Uses[id]
			if obj == nil || obj.Pkg() != p.Types || !obj.Pos().IsValid() || !declared(obj, p.Types.Scope()) {
				return true
			}
			to := filepath.Base(p.Fset.File(obj.Pos()).Name())
			if to != from && !slices.Contains(uses[from][to], obj.Name()) {
				uses[from][to] = append(uses[from][to], obj.Name())
			}
			return true
		})
	}
	return uses, nil
}

// declared reports whether obj is a package-level name, a method or a
// field: what one file can declare for another to use.
func declared(obj types.Object, pkg *types.Scope) bool {
	switch o := obj.(type) {
	case *types.Func:
		return true
	case *types.Var:
		return o.IsField() || o.Parent() == pkg
	case *types.TypeName, *types.Const:
		return obj.Parent() == pkg
	}
	return false
}

// Cycles returns the sets of files that use each other in a cycle
// (strongly connected components of more than one file), each sorted, in
// order of their first file.
func (u Uses) Cycles() [][]string {
	files := make([]string, 0, len(u))
	for f := range u {
		files = append(files, f)
	}
	sort.Strings(files)
	index, low := map[string]int{}, map[string]int{}
	onStack := map[string]bool{}
	var stack []string
	var out [][]string
	var visit func(string)
	visit = func(v string) {
		index[v], low[v] = len(index), len(index)
		stack = append(stack, v)
		onStack[v] = true
		next := make([]string, 0, len(u[v]))
		for w := range u[v] {
			next = append(next, w)
		}
		sort.Strings(next)
		for _, w := range next {
			if _, seen := index[w]; !seen {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] != index[v] {
			return
		}
		var comp []string
		for {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[w] = false
			comp = append(comp, w)
			if w == v {
				break
			}
		}
		if len(comp) > 1 {
			sort.Strings(comp)
			out = append(out, comp)
		}
	}
	for _, f := range files {
		if _, seen := index[f]; !seen {
			visit(f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}
