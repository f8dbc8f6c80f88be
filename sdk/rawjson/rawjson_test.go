package rawjson_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

var validCases = []string{
	`null`, `true`, `false`, `0`, `-0`, `12`, `-3.5e+10`, `1E2`, `0.25`,
	`""`, `"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00"`, `"\ud800"`,
	`[]`, `[1, "x", null, [true, {}]]`, `{}`, ` { "a" : 1 , "b":[{"c":"d"}] } `,
	`"é漢字"`, `"a long string that crosses eight byte words \" with an escape"`,
}

var invalidCases = []string{
	``, ` `, `nul`, `tru`, `01`, `-`, `1.`, `.5`, `1e`, `1e+`, `+1`, `"abc`, `"a\x"`, `"\u12g4"`,
	"\"tab\there\"", "\"control \x01 in a long string\"", `[1,]`, `[1 2]`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1`, `[`, `]`,
	`{"a":1}}`, `1 2`, `[1]x`, `"\u00"`,
}

func TestValidAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range append(append([]string{}, validCases...), invalidCases...) {
		if got, want := rawjson.Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", s, got, want)
		}
	}
	if rawjson.Valid([]byte(strings.Repeat("[", 600) + strings.Repeat("]", 600))) {
		t.Error("nesting beyond MaxDepth accepted")
	}
	if !rawjson.Valid([]byte(strings.Repeat("[", 400) + strings.Repeat("]", 400))) {
		t.Error("nesting of 400 refused")
	}
}

// TestTapeExample is the example of the package documentation and of
// sdk/ABI.md, entry by entry.
func TestTapeExample(t *testing.T) {
	doc, err := rawjson.Parse([]byte(`{"a":[1,"x"]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint32{
		uint32(rawjson.Object), 0, 13, 5,
		uint32(rawjson.String), 1, 4, 2,
		uint32(rawjson.Array), 5, 12, 5,
		uint32(rawjson.Number), 6, 7, 4,
		uint32(rawjson.String), 8, 11, 5,
	}
	if !reflect.DeepEqual(doc.Tape, want) {
		t.Fatalf("tape %v\nwant %v", doc.Tape, want)
	}
	doc, _ = rawjson.Parse([]byte(`"a\nb"`), doc.Tape)
	if !reflect.DeepEqual(doc.Tape, []uint32{uint32(rawjson.String) | rawjson.FlagEscaped, 0, 6, 1}) {
		t.Fatalf("escaped string: %v", doc.Tape)
	}
}

func TestAppendTapeAppends(t *testing.T) {
	tape, err := rawjson.AppendTape([]uint32{9, 9, 9, 9}, []byte(` [true] `))
	if err != nil {
		t.Fatal(err)
	}
	// Indexes in the next word are relative to the document's first entry.
	if want := []uint32{9, 9, 9, 9, uint32(rawjson.Array), 1, 7, 2, uint32(rawjson.Bool), 2, 6, 2}; !reflect.DeepEqual(tape, want) {
		t.Fatalf("%v", tape)
	}
	if _, err := rawjson.AppendTape(nil, []byte(`[tru]`)); err != rawjson.ErrSyntax {
		t.Fatalf("err %v", err)
	}
}

func parse(t *testing.T, s string) rawjson.Value {
	t.Helper()
	doc, err := rawjson.Parse([]byte(s), nil)
	if err != nil {
		t.Fatalf("Parse(%s): %v", s, err)
	}
	return doc.Root()
}

func TestNavigate(t *testing.T) {
	v := parse(t, ` {"type":"content_block_delta", "index" : 2, "delta":{"type":"text_delta","text":"Hi \"there\""}, "k\u0065y":[1,[2],{"x":3}], "dup":1, "dup":2, "t":true, "f":false, "n":null } `)
	tests := []struct{ key, raw string }{
		{"type", `"content_block_delta"`},
		{"index", `2`},
		{"delta", `{"type":"text_delta","text":"Hi \"there\""}`},
		{"key", `[1,[2],{"x":3}]`},
		{"dup", `1`},
		{"missing", ``},
	}
	for _, tt := range tests {
		if got := string(v.Get(tt.key).Raw()); got != tt.raw {
			t.Errorf("Get(%q) = %q, want %q", tt.key, got, tt.raw)
		}
	}
	text := v.Get("delta").Get("text")
	if s, ok := text.Str(); !ok || string(s) != `Hi "there"` || !text.Escaped() || !text.StringIs(`Hi "there"`) {
		t.Fatalf("text %q %v", s, ok)
	}
	if n, ok := v.Get("index").Int(); !ok || n != 2 {
		t.Fatal("index")
	}
	if !v.Get("t").IsTrue() || v.Get("f").IsTrue() || !v.Get("n").IsNull() || v.Get("missing").IsNull() || v.Get("missing").Exists() {
		t.Fatal("literals")
	}
	if v.Get("index").Get("x").Exists() || v.Get("type").Len() != 0 {
		t.Fatal("Get on a non-object")
	}
	var keys []string
	for m := v.Members(); m.Next(); {
		keys = append(keys, string(m.Key())+"="+string(m.Value().Raw()))
	}
	if got := strings.Join(keys, " "); got != `type="content_block_delta" index=2 delta={"type":"text_delta","text":"Hi \"there\""} k\u0065y=[1,[2],{"x":3}] dup=1 dup=2 t=true f=false n=null` {
		t.Fatalf("members %s", got)
	}
	var elems []string
	arr := v.Get("key")
	for e := arr.Elements(); e.Next(); {
		elems = append(elems, string(e.Value().Raw()))
	}
	if strings.Join(elems, "|") != `1|[2]|{"x":3}` || arr.Len() != 3 || v.Len() != 9 {
		t.Fatalf("elements %v, len %d", elems, arr.Len())
	}
	for m := v.Members(); m.Next(); {
		if m.KeyIs("key") && !bytes.Equal(m.Key(), []byte(`k\u0065y`)) {
			t.Fatal("KeyIs decodes escapes, Key does not")
		}
	}
	if m := v.Get("type").Members(); m.Next() {
		t.Fatal("members of a string")
	}
	var none rawjson.Value
	if none.Kind() != rawjson.Invalid || none.Raw() != nil || none.Get("a").Exists() {
		t.Fatal("zero Value")
	}
	for in, want := range map[string]int64{`0`: 0, `-7`: -7, `9223372036854775807`: 1<<63 - 1, `-9223372036854775808`: -1 << 63} {
		if n, ok := parse(t, in).Int(); !ok || n != want {
			t.Errorf("Int(%s) = %d %v", in, n, ok)
		}
	}
	for _, s := range []string{`1.5`, `1e3`, `"1"`, `99999999999999999999`, `9223372036854775808`, `-9223372036854775809`} {
		if _, ok := parse(t, s).Int(); ok {
			t.Errorf("Int(%s) accepted", s)
		}
	}
}

func TestStrings(t *testing.T) {
	for _, s := range []string{``, `plain`, "quote\" back\\ nl\n tab\t ctl\x01 é 😀 \u2028", "bad\xffutf8", "long text over eight bytes long, plain"} {
		lit := rawjson.AppendString(nil, s)
		if !json.Valid(lit) {
			t.Fatalf("AppendString(%q) = %s, not valid JSON", s, lit)
		}
		var back string
		json.Unmarshal(lit, &back)
		if want := strings.ToValidUTF8(s, "\ufffd"); back != want {
			t.Fatalf("round trip of %q gave %q", s, back)
		}
		if got, ok := rawjson.Unquote(lit); !ok || got != back {
			t.Fatalf("Unquote(%s) = %q %v", lit, got, ok)
		}
		if b := rawjson.AppendString(nil, []byte(s)); !bytes.Equal(b, lit) {
			t.Fatalf("[]byte and string forms differ: %s vs %s", b, lit)
		}
	}
	if got, ok := rawjson.Unquote([]byte(`"\ud83d\ude00 \u00e9 \/"`)); !ok || got != "😀 é /" {
		t.Fatalf("escapes: %q %v", got, ok)
	}
	if got, _ := rawjson.Unquote([]byte(`"\ud83d x"`)); got != "\ufffd x" {
		t.Fatalf("lone surrogate: %q", got)
	}
	raw := []byte(`"no escapes"`)
	doc, _ := rawjson.Parse(raw, nil)
	if c, ok := doc.Root().Str(); !ok || &c[0] != &raw[1] {
		t.Fatal("Str copied a string without escapes")
	}
	if _, ok := rawjson.Unquote([]byte(`1`)); ok {
		t.Fatal("Unquote of a number")
	}
}

// FuzzTape checks Parse against encoding/json, and the tape's invariants:
// every entry lies inside its parent, Raw of every value is valid JSON, and
// objects and arrays have the members and elements encoding/json decodes.
func FuzzTape(f *testing.F) {
	for _, s := range append(append([]string{}, validCases...), invalidCases...) {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":5}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := rawjson.Parse(b, nil)
		if (err == nil) != json.Valid(b) {
			t.Fatalf("Parse(%q) err %v, encoding/json disagrees", b, err)
		}
		if err != nil {
			return
		}
		var decoded any
		if json.Unmarshal(b, &decoded) != nil {
			return // e.g. a number out of float64 range
		}
		if err := check(doc.Root(), decoded); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
	})
}

func check(v rawjson.Value, want any) error {
	if !json.Valid(v.Raw()) {
		return fmt.Errorf("Raw %q not valid", v.Raw())
	}
	switch w := want.(type) {
	case map[string]any:
		seen := map[string]bool{}
		for m := v.Members(); m.Next(); {
			key, ok := rawjson.Unquote([]byte(`"` + string(m.Key()) + `"`))
			if !ok {
				return fmt.Errorf("key %q", m.Key())
			}
			if seen[key] {
				continue // duplicate keys: encoding/json keeps the last
			}
			seen[key] = true
			if !m.KeyIs(key) {
				return fmt.Errorf("KeyIs(%q) false", key)
			}
			if _, ok := w[key]; !ok {
				return fmt.Errorf("member %q not decoded by encoding/json", key)
			}
		}
		if len(seen) != len(w) {
			return fmt.Errorf("%d members, encoding/json has %d", len(seen), len(w))
		}
		for k, sub := range w {
			last := rawjson.Value{}
			for m := v.Members(); m.Next(); {
				if m.KeyIs(k) {
					last = m.Value()
				}
			}
			if err := check(last, sub); err != nil {
				return err
			}
		}
	case []any:
		i := 0
		for e := v.Elements(); e.Next(); i++ {
			if i >= len(w) {
				return fmt.Errorf("more elements than encoding/json")
			}
			if err := check(e.Value(), w[i]); err != nil {
				return err
			}
		}
		if i != len(w) {
			return fmt.Errorf("%d elements, encoding/json has %d", i, len(w))
		}
	case string:
		s, ok := v.Str()
		if !ok || (utf8.Valid(s) && string(s) != w) {
			return fmt.Errorf("string %q decoded %q, encoding/json %q", v.Raw(), s, w)
		}
	case nil:
		if !v.IsNull() {
			return fmt.Errorf("%q is not null", v.Raw())
		}
	case bool:
		if v.Kind() != rawjson.Bool || v.IsTrue() != w {
			return fmt.Errorf("%q is not %v", v.Raw(), w)
		}
	case float64:
		if v.Kind() != rawjson.Number {
			return fmt.Errorf("%q is not a number", v.Raw())
		}
	}
	return nil
}

// BenchmarkParseRequest: the tape of a ~2 KB chat request, natively (what
// json_tape costs the host).
func BenchmarkParseRequest(b *testing.B) {
	req := []byte(`{"model":"claude-x","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 160) + `"}],"max_tokens":100}`)
	tape := make([]uint32, 0, 256)
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		rawjson.Parse(req, tape)
	}
}

// BenchmarkParseEvent: the tape of one streamed event.
func BenchmarkParseEvent(b *testing.B) {
	ev := []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"token "}}`)
	tape := make([]uint32, 0, 256)
	for b.Loop() {
		rawjson.Parse(ev, tape)
	}
}

// TestEqual compares every length from 0 to 40 with itself and with a copy
// differing in each single position, and lengths that differ by one.
func TestEqual(t *testing.T) {
	for n := 0; n <= 40; n++ {
		s := make([]byte, n)
		for i := range s {
			s[i] = byte('a' + i%26)
		}
		if !rawjson.Equal(append([]byte(nil), s...), string(s)) || !rawjson.Equal(s, s) {
			t.Fatalf("len %d: equal bytes reported different", n)
		}
		for i := 0; i < n; i++ {
			d := append([]byte(nil), s...)
			d[i] ^= 0x20
			if rawjson.Equal(d, string(s)) {
				t.Fatalf("len %d: a difference at %d not seen", n, i)
			}
		}
		if rawjson.Equal(s, string(s)+"x") || (n > 0 && rawjson.Equal(s, string(s[:n-1]))) {
			t.Fatalf("len %d: different lengths reported equal", n)
		}
	}
}
