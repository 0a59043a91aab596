// Package apicheck keeps the public API what a user calls: it lists every
// exported identifier of the public packages and compares the list with
// api.txt (so that every addition is a deliberate, reviewed change), and
// fails when an exported signature names a type of an internal package or
// an identifier that belongs to the master ↔ worker plumbing.
//
// After a deliberate change of the API: go test ./internal/apicheck -update
package apicheck

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite api.txt from the code")

// public are the packages a user imports.
var public = []string{"listener", "master", "metrics", "server", "state", "state/table", "worker"}

// plumbing are names of what only our own packages need; none may be
// exported by a public package.
var plumbing = regexp.MustCompile(`^(Env[A-Z]|IsShim|RunShim|Shim|Carry|Series|Aggregator|WorkerServer|MetricsFile|MapState|RecycleVar|Demo)`)

// exported lists "pkg: kind Name[.Member]" for every exported identifier,
// and the internal-package types named in exported declarations.
func exported(t *testing.T, root, pkg string) (ids, leaks []string) {
	t.Helper()
	fset := token.NewFileSet()
	dir := filepath.Join(root, pkg)
	pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", dir, err)
	}
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			ids = append(ids, pkg+": "+s)
		}
	}
	for _, p := range pkgs {
		for _, f := range p.Files {
			internal := map[string]string{} // import name → path
			for _, im := range f.Imports {
				path, _ := strconv.Unquote(im.Path.Value)
				if strings.Contains(path, "/internal/") {
					name := path[strings.LastIndex(path, "/")+1:]
					if im.Name != nil {
						name = im.Name.Name
					}
					internal[name] = path
				}
			}
			check := func(where string, n ast.Node) {
				ast.Inspect(n, func(n ast.Node) bool {
					if se, ok := n.(*ast.SelectorExpr); ok {
						if x, ok := se.X.(*ast.Ident); ok && internal[x.Name] != "" {
							leaks = append(leaks, fmt.Sprintf("%s: %s names %s.%s", pkg, where, internal[x.Name], se.Sel.Name))
						}
					}
					return true
				})
			}
			for _, d := range f.Decls {
				declared(d, add, check)
			}
		}
	}
	return ids, leaks
}

func declared(d ast.Decl, add func(string), check func(string, ast.Node)) {
	switch d := d.(type) {
	case *ast.FuncDecl:
		if !d.Name.IsExported() {
			return
		}
		name := d.Name.Name
		if d.Recv != nil {
			recv := recvName(d.Recv.List[0].Type)
			if !ast.IsExported(recv) {
				return
			}
			name = recv + "." + name
		}
		add("func " + name)
		check("func "+name, d.Type)
	case *ast.GenDecl:
		for _, s := range d.Specs {
			switch s := s.(type) {
			case *ast.TypeSpec:
				if !s.Name.IsExported() {
					continue
				}
				add("type " + s.Name.Name)
				if st, ok := s.Type.(*ast.StructType); ok {
					for _, fld := range st.Fields.List {
						for _, n := range fld.Names {
							if n.IsExported() {
								add("field " + s.Name.Name + "." + n.Name)
								check("field "+s.Name.Name+"."+n.Name, fld.Type)
							}
						}
						if len(fld.Names) == 0 {
							check("embedded field of "+s.Name.Name, fld.Type)
						}
					}
				} else {
					check("type "+s.Name.Name, s.Type)
				}
			case *ast.ValueSpec:
				for _, n := range s.Names {
					if n.IsExported() {
						add(d.Tok.String() + " " + n.Name)
						if s.Type != nil {
							check(n.Name, s.Type)
						}
					}
				}
			}
		}
	}
}

func recvName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return recvName(e.X)
	case *ast.IndexExpr:
		return recvName(e.X)
	case *ast.Ident:
		return e.Name
	}
	return ""
}

func TestPublicAPI(t *testing.T) {
	root := filepath.Join("..", "..")
	var all, leaks []string
	for _, pkg := range public {
		ids, l := exported(t, root, pkg)
		all = append(all, ids...)
		leaks = append(leaks, l...)
	}
	sort.Strings(all)
	for _, l := range leaks {
		t.Errorf("internal type in the public API: %s", l)
	}
	for _, id := range all {
		name := id[strings.LastIndex(id, " ")+1:]
		if i := strings.IndexByte(name, '.'); i >= 0 {
			name = name[i+1:]
		}
		if plumbing.MatchString(name) {
			t.Errorf("plumbing exported (move it to internal/): %s", id)
		}
	}
	got := strings.Join(all, "\n") + "\n"
	if *update {
		if err := os.WriteFile("api.txt", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile("api.txt")
	if err != nil {
		t.Fatalf("%v (run: go test ./internal/apicheck -update)", err)
	}
	wantSet := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(want)), "\n") {
		wantSet[l] = true
	}
	for _, id := range all {
		if !wantSet[id] {
			t.Errorf("new export, not in api.txt: %s", id)
		}
		delete(wantSet, id)
	}
	for id := range wantSet {
		t.Errorf("in api.txt but no longer exported: %s", id)
	}
	if t.Failed() {
		t.Log("a deliberate API change: go test ./internal/apicheck -update, and review the diff of api.txt")
	}
}
