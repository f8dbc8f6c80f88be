package apierror_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// codeConsts reads the codes the proxy gives from codes.go.
func codeConsts(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s is not a string literal", n.Name)
				}
				v, _ := strconv.Unquote(lit.Value)
				out[n.Name] = v
			}
		}
	}
	return out
}

// TestCodesDocumented: every code the proxy gives is in docs/api.md's
// error codes, and no two constants share a code.
func TestCodesDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## Error codes")
	if !ok {
		t.Fatal(`docs/api.md has no "## Error codes" section`)
	}
	seen := map[string]string{}
	for name, code := range codeConsts(t) {
		if code == "" {
			continue
		}
		if other, dup := seen[code]; dup {
			t.Errorf("%s and %s are both %q", name, other, code)
		}
		seen[code] = name
		if !strings.Contains(section, "`"+code+"`") {
			t.Errorf("%s (%q) is not in docs/api.md's error codes", name, code)
		}
	}
}

// TestNoCodeLiterals: the host's code names error codes by their
// constants, never by a string literal, so that a code is spelled one way
// and documented once.
func TestNoCodeLiterals(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				// apierror.New(status, code, message)
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "New" && len(n.Args) == 3 {
					if x, ok := sel.X.(*ast.Ident); ok && x.Name == "apierror" {
						if lit, ok := n.Args[1].(*ast.BasicLit); ok {
							t.Errorf("%s: apierror.New with the code %s: use its constant", fset.Position(lit.Pos()), lit.Value)
						}
					}
				}
			case *ast.BinaryExpr:
				// e.Code == "..."
				if sel, ok := n.X.(*ast.SelectorExpr); ok && sel.Sel.Name == "Code" {
					if lit, ok := n.Y.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						t.Errorf("%s: a code compared with %s: use its constant", fset.Position(lit.Pos()), lit.Value)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
