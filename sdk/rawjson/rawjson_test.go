package rawjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

var validCases = []string{
	`null`, `true`, `false`, `0`, `-0`, `12`, `-3.5e+10`, `1E2`, `0.25`,
	`""`, `"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00"`, `"\ud800"`,
	`[]`, `[1, "x", null, [true, {}]]`, `{}`, ` { "a" : 1 , "b":[{"c":"d"}] } `,
	`"é漢字"`,
}

var invalidCases = []string{
	``, ` `, `nul`, `tru`, `01`, `-`, `1.`, `.5`, `1e`, `1e+`, `+1`, `"abc`, `"a\x"`, `"\u12g4"`,
	"\"tab\there\"", `[1,]`, `[1 2]`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1`, `[`, `]`,
	`{"a":1}}`, `1 2`, `[1]x`, `"\u00"`,
}

func TestValidAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range append(append([]string{}, validCases...), invalidCases...) {
		if got, want := rawjson.Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", s, got, want)
		}
	}
	deep := strings.Repeat("[", 600) + strings.Repeat("]", 600)
	if rawjson.Valid([]byte(deep)) {
		t.Error("nesting beyond the depth limit accepted")
	}
	ok := strings.Repeat("[", 400) + strings.Repeat("]", 400)
	if !rawjson.Valid([]byte(ok)) {
		t.Error("nesting of 400 refused")
	}
}

func TestKindOf(t *testing.T) {
	for in, want := range map[string]rawjson.Kind{
		` {"a":1}`: rawjson.Object, `[1]`: rawjson.Array, `"s"`: rawjson.String, `true`: rawjson.Bool,
		`false`: rawjson.Bool, `null`: rawjson.Null, `-1`: rawjson.Number, `7`: rawjson.Number, ``: rawjson.Invalid, `x`: rawjson.Invalid,
	} {
		if got := rawjson.KindOf([]byte(in)); got != want {
			t.Errorf("KindOf(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestGet(t *testing.T) {
	obj := []byte(` {"type":"content_block_delta", "index" : 2, "delta":{"type":"text_delta","text":"Hi \"there\""}, "k\u0065y":[1,2], "dup":1, "dup":2 } `)
	tests := []struct{ key, want string }{
		{"type", `"content_block_delta"`},
		{"index", `2`},
		{"delta", `{"type":"text_delta","text":"Hi \"there\""}`},
		{"key", `[1,2]`},
		{"dup", `1`},
		{"missing", ``},
	}
	for _, tt := range tests {
		if got := string(rawjson.Get(obj, tt.key)); got != tt.want {
			t.Errorf("Get(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
	if got := string(rawjson.Get(rawjson.Get(obj, "delta"), "text")); got != `"Hi \"there\""` {
		t.Errorf("nested Get = %q", got)
	}
	for _, bad := range []string{`[1]`, `{"a":}`, `{"a":1 "type":"x"}`, `"str"`, ``} {
		if rawjson.Get([]byte(bad), "type") != nil {
			t.Errorf("Get on %q found a value", bad)
		}
	}
}

func TestEachMemberAndElement(t *testing.T) {
	var keys []string
	err := rawjson.EachMember([]byte(`{"a":1,"b":{"c":[2]},"d":"e"}`), func(k, v []byte) error {
		keys = append(keys, string(k)+"="+string(v))
		return nil
	})
	if err != nil || strings.Join(keys, " ") != `a=1 b={"c":[2]} d="e"` {
		t.Fatalf("members %v, err %v", keys, err)
	}
	stop := errors.New("stop")
	n := 0
	if err := rawjson.EachMember([]byte(`{"a":1,"b":2}`), func(k, v []byte) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("stop: err %v after %d", err, n)
	}
	var elems []string
	err = rawjson.EachElement([]byte(` [ 1 , "two" , [3] , {"four":4} ] `), func(v []byte) error {
		elems = append(elems, string(v))
		return nil
	})
	if err != nil || strings.Join(elems, "|") != `1|"two"|[3]|{"four":4}` {
		t.Fatalf("elements %v, err %v", elems, err)
	}
	for _, bad := range []string{`{"a":1,}`, `{"a":1} x`, `{`, `[1,`, `[1 2]`, `{"a":tru}`} {
		errA := rawjson.EachMember([]byte(bad), func(k, v []byte) error { return nil })
		errB := rawjson.EachElement([]byte(bad), func(v []byte) error { return nil })
		if errA == nil && errB == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := rawjson.EachElement([]byte(`[]`), func([]byte) error { t.Fatal("called"); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := rawjson.EachMember([]byte(`{ }`), func(k, v []byte) error { t.Fatal("called"); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestStrings(t *testing.T) {
	for _, s := range []string{``, `plain`, "quote\" back\\ nl\n tab\t ctl\x01 é 😀 \u2028", "bad\xffutf8"} {
		lit := rawjson.AppendString(nil, s)
		if !json.Valid(lit) {
			t.Fatalf("AppendString(%q) = %s, not valid JSON", s, lit)
		}
		var back string
		json.Unmarshal(lit, &back)
		if want := strings.ToValidUTF8(s, "\ufffd"); back != want {
			t.Fatalf("round trip of %q gave %q", s, back)
		}
		got, ok := rawjson.Unquote(lit)
		if !ok || got != back {
			t.Fatalf("Unquote(%s) = %q %v", lit, got, ok)
		}
		if !rawjson.IsString(lit, back) {
			t.Fatalf("IsString(%s, %q) false", lit, back)
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
	if c, ok := rawjson.StringContent(raw); !ok || &c[0] != &raw[1] {
		t.Fatal("StringContent copied a string without escapes")
	}
	for _, bad := range []string{`"abc`, `abc`, `"a\q"`, `"a" `, `1`} {
		if _, ok := rawjson.StringContent([]byte(bad)); ok && bad != `"a" ` {
			t.Errorf("StringContent(%q) accepted", bad)
		}
	}
	if rawjson.IsString([]byte(`"ab"`), "abc") || rawjson.IsString([]byte(`1`), "1") {
		t.Fatal("IsString false positive")
	}
}

func TestIntAndLiterals(t *testing.T) {
	for in, want := range map[string]int64{`0`: 0, `42`: 42, `-7`: -7, ` 9223372036854775807 `: 9223372036854775807} {
		if got, ok := rawjson.Int([]byte(in)); !ok || got != want {
			t.Errorf("Int(%q) = %d %v", in, got, ok)
		}
	}
	for _, bad := range []string{`1.5`, `1e3`, `"1"`, `01`, `-`, ``, `99999999999999999999`, `9223372036854775808`} {
		if _, ok := rawjson.Int([]byte(bad)); ok {
			t.Errorf("Int(%q) accepted", bad)
		}
	}
	if !rawjson.IsNull([]byte(" null ")) || rawjson.IsNull(nil) || !rawjson.IsTrue([]byte("true")) || rawjson.IsTrue([]byte("false")) {
		t.Fatal("literals")
	}
}

// FuzzRawJSON checks Valid against encoding/json, and that every member and
// element EachMember and EachElement report is itself valid JSON equal to
// what encoding/json decodes.
func FuzzRawJSON(f *testing.F) {
	for _, s := range append(append([]string{}, validCases...), invalidCases...) {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":5}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		valid := rawjson.Valid(b)
		if valid != json.Valid(b) {
			t.Fatalf("Valid(%q) = %v, encoding/json disagrees", b, valid)
		}
		if !valid {
			return
		}
		var decoded any
		if err := json.Unmarshal(b, &decoded); err != nil {
			return // e.g. a number out of float64 range
		}
		switch rawjson.KindOf(b) {
		case rawjson.Object:
			m := decoded.(map[string]any)
			seen := map[string]bool{}
			err := rawjson.EachMember(b, func(k, v []byte) error {
				key, ok := rawjson.Unquote([]byte(`"` + string(k) + `"`))
				if !ok || !rawjson.Valid(v) {
					return fmt.Errorf("member %q: bad key or value %q", k, v)
				}
				if seen[key] {
					return nil // duplicate keys: encoding/json keeps the last
				}
				seen[key] = true
				if _, ok := m[key]; !ok {
					return fmt.Errorf("member %q not decoded by encoding/json", key)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) != len(m) {
				t.Fatalf("%d members, encoding/json has %d", len(seen), len(m))
			}
		case rawjson.Array:
			n := 0
			err := rawjson.EachElement(b, func(v []byte) error {
				n++
				if !rawjson.Valid(v) {
					return fmt.Errorf("element %q not valid", v)
				}
				return nil
			})
			if err != nil || n != len(decoded.([]any)) {
				t.Fatalf("elements: %d, err %v", n, err)
			}
		case rawjson.String:
			s, ok := rawjson.Unquote(b)
			if !ok || (utf8.ValidString(s) && s != decoded.(string)) {
				t.Fatalf("Unquote(%q) = %q, encoding/json %q", b, s, decoded)
			}
		}
	})
}
