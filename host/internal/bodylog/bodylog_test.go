package bodylog

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRedactJSON(t *testing.T) {
	p := New(1<<20, []string{"api_key", "Password", "authorization", "secret"})
	for _, c := range []struct{ name, in, want string }{
		{"nothing to redact", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
			`{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{"top level", `{"api_key":"sk-1","model":"m"}`, `{"api_key":"[REDACTED]","model":"m"}`},
		{"any depth, any type", `{"a":{"b":[{"password":{"x":[1,"}"]}},{"PASSWORD":12.5e3}]},"authorization":true}`,
			`{"a":{"b":[{"password":"[REDACTED]"},{"PASSWORD":"[REDACTED]"}]},"authorization":"[REDACTED]"}`},
		{"spacing kept", "{ \"api_key\" :\n  \"sk-1\" , \"n\": 1 }", "{ \"api_key\" :\n  \"[REDACTED]\" , \"n\": 1 }"},
		{"null kept", `{"api_key":null}`, `{"api_key":null}`},
		{"a value named like a field is not a key", `{"content":"password","x":["api_key",":"]}`,
			`{"content":"password","x":["api_key",":"]}`},
		{"escaped key", `{"pass\u0077ord":"s3cret"}`, `{"pass\u0077ord":"[REDACTED]"}`},
		{"quotes and colons inside strings", `{"c":"a\":{\"api_key\":\"no\"}","api_key":"k\"e:y"}`,
			`{"c":"a\":{\"api_key\":\"no\"}","api_key":"[REDACTED]"}`},
		{"cut in a redacted string", `{"model":"m","api_key":"sk-abc`, `{"model":"m","api_key":"[REDACTED]"`},
		{"cut in a redacted object", `{"password":{"a":[1,2`, `{"password":"[REDACTED]"`},
		{"cut after the colon", `{"password":`, `{"password":"[REDACTED]"`},
		{"not JSON", `password=hunter2 {"api_key": 1}`, `password=hunter2 {"api_key": "[REDACTED]"}`},
		{"array at top", `[{"api_key":"a"},{"api_key":"b"}]`, `[{"api_key":"[REDACTED]"},{"api_key":"[REDACTED]"}]`},
		{"JSON inside a string", `{"tool_calls":[{"function":{"name":"login","arguments":"{\"user\":\"bo\",\"password\":\"hunter2\"}"}}]}`,
			`{"tool_calls":[{"function":{"name":"login","arguments":"{\"user\":\"bo\",\"password\":\"[REDACTED]\"}"}}]}`},
		{"JSON in JSON in a string", `["[{\"x\":\"{\\\"api_key\\\":1}\"}]"]`,
			`["[{\"x\":\"{\\\"api_key\\\":\\\"[REDACTED]\\\"}\"}]"]`},
		{"JSON string with nothing to redact is kept byte for byte", `{"arguments":"{\"q\":\"\u003cb\u003e\"}"}`,
			`{"arguments":"{\"q\":\"\u003cb\u003e\"}"}`},
		{"JSON string re-encoded without HTML escapes", `{"arguments":"{\"q\":\"<b>&\",\"secret\":\"s\"}"}`,
			`{"arguments":"{\"q\":\"<b>&\",\"secret\":\"[REDACTED]\"}"}`},
		{"a JSON string cut short", `{"arguments":"{\"password\":\"hunt`, `{"arguments":"{\"password\":\"[REDACTED]\"`},
		{"a JSON string cut in an escape", `{"arguments":"{\"a\":1,\"password\":\"x\u00`, `{"arguments":"{\"a\":1,\"password\":\"[REDACTED]\"`},
		{"a JSON string cut after an escaped quote", `{"arguments":"{\"password\":\"x\"`, `{"arguments":"{\"password\":\"[REDACTED]\"`},
		{"a JSON string cut after a backslash", `{"arguments":"{\"password\":\"x\`, `{"arguments":"{\"password\":\"[REDACTED]\"`},
	} {
		if got := string(p.redactJSON(nil, []byte(c.in))); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

func TestRedactCase(t *testing.T) {
	p := New(1<<20, []string{"Pässword", "API_KEY"})
	in := `{"PÄSSWORD":"a","pässword":"b","Api_Key":"c","api_keys":"d","` + strings.Repeat("k", 80) + `":"e"}`
	want := `{"PÄSSWORD":"[REDACTED]","pässword":"[REDACTED]","Api_Key":"[REDACTED]","api_keys":"d","` + strings.Repeat("k", 80) + `":"e"}`
	if got := string(p.redactJSON(nil, []byte(in))); got != want {
		t.Fatalf("got %s", got)
	}
}

func TestRedactNothingConfigured(t *testing.T) {
	in := []byte(`{"api_key":"sk"}`)
	if got := New(100, nil).Prepare(in, len(in)); got != string(in) {
		t.Fatalf("got %s", got)
	}
}

func TestPrepareCapAndMark(t *testing.T) {
	p := New(16, []string{"api_key"})
	full := []byte(`{"model":"gpt-4o-mini","messages":[]}`)
	got := p.Prepare(Copy(full, p.Max()), len(full))
	if want := `{"model":"gpt-4o` + TruncatedSuffix(len(full)); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// Under the cap nothing is added.
	if got := p.Prepare(Copy([]byte(`{"a":1}`), p.Max()), 7); got != `{"a":1}` {
		t.Fatalf("got %q", got)
	}
	// Redaction that shrinks a body does not make it look cut.
	long := []byte(`{"api_key":"sk-0123456789"}`)
	if got := New(64, []string{"api_key"}).Prepare(long, len(long)); got != `{"api_key":"[REDACTED]"}` {
		t.Fatalf("got %q", got)
	}
	// Redaction that grows a body past the cap is cut and marked.
	grow := []byte(`{"api_key":1}`)
	if got := New(14, []string{"api_key"}).Prepare(grow, len(grow)); got != `{"api_key":"[R`+TruncatedSuffix(len(grow)) {
		t.Fatalf("got %q", got)
	}
	// A cut never splits a UTF-8 character.
	utf := []byte(`{"c":"ééééé"}`) // é is 2 bytes
	got = New(8, nil).Prepare(Copy(utf, 8), len(utf))
	if !strings.HasPrefix(got, `{"c":"é`) || strings.Contains(got, "\ufffd") || !strings.HasSuffix(got, TruncatedSuffix(len(utf))) {
		t.Fatalf("got %q", got)
	}
	if c := Copy(nil, 10); c != nil {
		t.Fatal("Copy(nil) is not nil")
	}
	if c := Copy([]byte{}, 10); c == nil || len(c) != 0 {
		t.Fatal("Copy of an empty body must be empty, not nil")
	}
}

func TestPrepareSSE(t *testing.T) {
	p := New(1<<20, []string{"secret"})
	stream := "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"secret\":\"s1\"}\n\n" +
		"data: {\"a\":1,\n" + // one event over two lines
		"data: \"secret\":\n" +
		"data: \"s2\"}\n\n" +
		"data: [DONE]\n\n"
	want := "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"secret\":\"[REDACTED]\"}\n\n" +
		"data: {\"a\":1,\n" +
		"data: \"secret\":\n" +
		"data: \"[REDACTED]\"}\n\n" +
		"data: [DONE]\n\n"
	if got := p.Prepare([]byte(stream), len(stream)); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	// Events without a match are kept byte for byte, whatever their form.
	kept := "data:{\"a\":1}\n: comment\n\ndata: {\"secret\":1}\n\nevent: x\ndata: [DONE]\n\n"
	if got := p.Prepare([]byte(kept), len(kept)); got != strings.Replace(kept, `{"secret":1}`, `{"secret":"[REDACTED]"}`, 1) {
		t.Fatalf("got %q", got)
	}
	// A value spread over lines collapses to one redacted line.
	multi := "data: {\"secret\":{\n" + "data: \"x\":1}}\n\n"
	if got := p.Prepare([]byte(multi), len(multi)); got != "data: {\"secret\":\"[REDACTED]\"}\n\n" {
		t.Fatalf("got %q", got)
	}
	// The cap cut the last event.
	cut := "data: {\"a\":1}\n\ndata: {\"secret\":\"abc"
	got := p.Prepare([]byte(cut), len(cut)+40)
	if want := "data: {\"a\":1}\n\ndata: {\"secret\":\"[REDACTED]\"" + TruncatedSuffix(len(cut)+40); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// FuzzPrepare: whatever the input, a redacted field's value never
// survives, and text without redacted fields is kept as it is.
func FuzzPrepare(f *testing.F) {
	for _, s := range []string{`{"api_key":"SECRETVALUE"}`, `{"a":[{"api_key":{"b":"SECRETVALUE"}}]}`,
		"data: {\"api_key\":\"SECRETVALUE\"}\n\n", `{"x":"y"}`, `[1,2,{"api_key":"SECRETVALUE"`} {
		f.Add(s)
	}
	f.Add("data: {\"a\":\ndata: {\"api_key\":\ndata: \"SECRETVALUE\"}}\n\ndata: [DONE]\n\n")
	p := New(1<<20, []string{"api_key"})
	// check fails if the JSON text js holds an api_key member that is not
	// null or "[REDACTED]".
	check := func(t *testing.T, in, js string) {
		var v any
		if json.Unmarshal([]byte(js), &v) != nil {
			return
		}
		var walk func(any)
		walk = func(x any) {
			switch x := x.(type) {
			case map[string]any:
				for k, e := range x {
					if strings.EqualFold(k, "api_key") && e != nil && e != "[REDACTED]" {
						t.Fatalf("%q kept %v", in, e)
					}
					walk(e)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			}
		}
		walk(v)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := p.Prepare([]byte(in), len(in))
		// In valid JSON, and in each event of a stream, every api_key
		// value is gone after redaction.
		if !strings.HasPrefix(in, "data:") {
			if json.Valid([]byte(in)) {
				check(t, in, got)
			}
		} else {
			for ev := range strings.SplitSeq(got, "\n\n") {
				var data []string
				for line := range strings.SplitSeq(ev, "\n") {
					if d, ok := strings.CutPrefix(line, "data:"); ok {
						data = append(data, strings.TrimPrefix(d, " "))
					}
				}
				check(t, in, strings.Join(data, "\n"))
			}
		}
		if !strings.Contains(strings.ToLower(in), "api_key") && !strings.Contains(in, `\`) && !strings.HasPrefix(in, "data:") && got != in {
			t.Fatalf("%q changed to %q", in, got)
		}
	})
}

// BenchmarkPrepare is the writer's work for one row's body: a 2 KB
// request and a 20-event stream, with the default fields, none present.
func BenchmarkPrepare(b *testing.B) {
	fields := []string{"api_key", "apikey", "x-api-key", "authorization", "password", "secret",
		"client_secret", "access_token", "refresh_token"}
	p := New(64<<10, fields)
	req := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 150) + `"}]}`)
	var sse []byte
	for i := range 20 {
		sse = append(sse, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"word `...)
		sse = append(sse, byte('a'+i))
		sse = append(sse, "\"},\"finish_reason\":null}],\"usage\":null}\n\n"...)
	}
	sse = append(sse, "data: [DONE]\n\n"...)
	b.Run("request", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(req)))
		for b.Loop() {
			p.Prepare(req, len(req))
		}
	})
	b.Run("stream", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(sse)))
		for b.Loop() {
			p.Prepare(sse, len(sse))
		}
	})
}
