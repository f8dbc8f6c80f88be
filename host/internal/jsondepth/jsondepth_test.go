package jsondepth

import (
	"strings"
	"testing"
)

func TestWithin(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	tests := []struct {
		name string
		doc  string
		max  int
		want bool
	}{
		{"empty", "", 2, true},
		{"scalar", `"x"`, 0, true},
		{"at the bound", deep(3), 3, true},
		{"past the bound", deep(4), 3, false},
		{"objects and arrays", `{"a":[{"b":[1]}]}`, 4, true},
		{"objects and arrays past", `{"a":[{"b":[1]}]}`, 3, false},
		{"brackets in strings", `["[[[[{{{{", "\"[[[["]`, 1, true},
		{"escaped quote then bracket", `["\\", [[]]]`, 2, false},
		{"siblings do not add up", `[[],[],[],[]]`, 2, true},
		{"unclosed", strings.Repeat("[", 1<<20), Max, false},
		{"unterminated string", `["abc`, 1, true},
		{"real depth limit", deep(Max), Max, true},
		{"one past", deep(Max + 1), Max, false},
	}
	for _, tt := range tests {
		if got := Within([]byte(tt.doc), tt.max); got != tt.want {
			t.Errorf("%s: Within = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func BenchmarkWithin4MiB(b *testing.B) {
	doc := []byte(`{"messages":[` + strings.Repeat(`{"role":"user","content":"lorem ipsum dolor [sit] amet"},`, 70000) + `{}]}`)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if !Within(doc, Max) {
			b.Fatal("too deep")
		}
	}
}
