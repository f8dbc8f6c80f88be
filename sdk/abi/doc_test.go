package abi_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// docRow matches a row of ABI.md's reference tables:
// | `name` | `(a, b)` | rest...
var docRow = regexp.MustCompile("^\\| `([a-z0-9_]+)` \\| `\\(([a-z_, ]*)\\)` \\| ([^|]+)\\|(.*)$")

// TestABIDocMatchesTable holds sdk/ABI.md's table of host functions (§5)
// and table of callbacks (§2) to the table in this package: the same
// functions, in the same order, with the same parameter names, results
// and required flags.
func TestABIDocMatchesTable(t *testing.T) {
	b, err := os.ReadFile("../ABI.md")
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ name, params, third, rest string }
	var hostRows, exportRows []row
	for _, line := range strings.Split(string(b), "\n") {
		m := docRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		r := row{m[1], m[2], strings.TrimSpace(m[3]), strings.TrimSpace(m[4])}
		if strings.HasPrefix(r.name, "llmproxy_on_") {
			exportRows = append(exportRows, r)
		} else {
			hostRows = append(hostRows, r)
		}
	}
	params := func(f abi.Func) string {
		var names []string
		for _, p := range f.Params {
			names = append(names, p.Name)
		}
		return strings.Join(names, ", ")
	}
	if len(hostRows) != len(abi.HostFuncs) {
		t.Fatalf("ABI.md lists %d host functions, the table %d", len(hostRows), len(abi.HostFuncs))
	}
	for i, f := range abi.HostFuncs {
		r := hostRows[i]
		if r.name != f.Name || r.params != params(f) || r.third != f.Result {
			t.Errorf("ABI.md row %d: `%s` (%s) -> %q; table: `%s` (%s) -> %q", i, r.name, r.params, r.third, f.Name, params(f), f.Result)
		}
	}
	if len(exportRows) != len(abi.Exports) {
		t.Fatalf("ABI.md lists %d callbacks, the table %d", len(exportRows), len(abi.Exports))
	}
	for i, f := range abi.Exports {
		r := exportRows[i]
		required := map[bool]string{true: "yes", false: "no"}[f.Required]
		if r.name != f.Name || r.params != params(f) || r.third != required || strings.TrimSpace(strings.TrimSuffix(r.rest, "|")) != f.Doc {
			t.Errorf("ABI.md callback row %d: `%s` (%s) required %q %q; table: `%s` (%s) required %q %q", i, r.name, r.params, r.third, r.rest, f.Name, params(f), required, f.Doc)
		}
	}
	// Every host function has its own section.
	for _, f := range abi.HostFuncs {
		if !regexp.MustCompile("(?m)^### 5\\.[0-9]+ `" + f.Name + "`$").Match(b) {
			t.Errorf("ABI.md has no section for %s", f.Name)
		}
	}
}
