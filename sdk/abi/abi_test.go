package abi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// ---------------------------------------------------------------------------
// Request heads

func TestHeadRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		method  string
		url     string
		headers [][2]string
	}{
		{name: "no headers", method: "GET", url: "https://api.example.com/v1/models"},
		{
			name:   "several headers",
			method: "POST",
			url:    "https://api.example.com/v1/chat/completions?x=1&y=2",
			headers: [][2]string{
				{"Content-Type", "application/json"},
				{"Accept", "text/event-stream"},
				{"X-Request-Id", "abc-123"},
			},
		},
		{name: "empty value", method: "PUT", url: "http://127.0.0.1:8080/x", headers: [][2]string{{"X-Empty", ""}}},
		{name: "value with colons", method: "GET", url: "https://h/", headers: [][2]string{{"Link", "https://a.example:443/b"}}},
		{name: "repeated name keeps order", method: "GET", url: "https://h/", headers: [][2]string{{"Accept", "a"}, {"Accept", "b"}}},
		{name: "token punctuation in names", method: "PATCH", url: "https://h/", headers: [][2]string{{"x!#$%&'*+-.^_`|~9", "v"}}},
		{name: "value with inner spaces and tabs", method: "GET", url: "https://h/", headers: [][2]string{{"X-A", "a b\tc"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := abi.AppendHead(nil, tt.method, tt.url, tt.headers)
			h, err := abi.ParseHead(b)
			if err != nil {
				t.Fatalf("ParseHead(%q): %v", b, err)
			}
			want := abi.Head{Method: tt.method, URL: tt.url, Headers: tt.headers}
			if !reflect.DeepEqual(h, want) {
				t.Fatalf("ParseHead(%q)\n got %#v\nwant %#v", b, h, want)
			}
		})
	}
}

func TestAppendHeadAppends(t *testing.T) {
	t.Parallel()
	dst := []byte("prefix|")
	got := abi.AppendHead(dst, "GET", "https://h/", [][2]string{{"A", "b"}})
	if want := "prefix|GET https://h/\nA: b\n"; string(got) != want {
		t.Fatalf("AppendHead = %q, want %q", got, want)
	}
}

func TestParseHead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    abi.Head
		wantErr bool
	}{
		{
			name: "LF endings",
			in:   "POST https://api.example.com/v1/chat/completions\nContent-Type: application/json\n",
			want: abi.Head{Method: "POST", URL: "https://api.example.com/v1/chat/completions", Headers: [][2]string{{"Content-Type", "application/json"}}},
		},
		{
			name: "no trailing LF",
			in:   "GET https://h/x\nAccept: */*",
			want: abi.Head{Method: "GET", URL: "https://h/x", Headers: [][2]string{{"Accept", "*/*"}}},
		},
		{
			name: "CRLF endings tolerated",
			in:   "GET https://h/x\r\nAccept: a\r\nX-B: b\r\n",
			want: abi.Head{Method: "GET", URL: "https://h/x", Headers: [][2]string{{"Accept", "a"}, {"X-B", "b"}}},
		},
		{
			name: "request line only",
			in:   "DELETE https://h/x",
			want: abi.Head{Method: "DELETE", URL: "https://h/x"},
		},
		{
			name: "blank lines are skipped",
			in:   "GET https://h/x\n\n\r\nA: b\n\n",
			want: abi.Head{Method: "GET", URL: "https://h/x", Headers: [][2]string{{"A", "b"}}},
		},
		{
			name: "value whitespace trimmed",
			in:   "GET https://h/x\nA:    spaced out \t\n",
			want: abi.Head{Method: "GET", URL: "https://h/x", Headers: [][2]string{{"A", "spaced out"}}},
		},
		{
			name: "name case preserved",
			in:   "GET https://h/x\nx-API-key: k\n",
			want: abi.Head{Method: "GET", URL: "https://h/x", Headers: [][2]string{{"x-API-key", "k"}}},
		},
		{
			name: "value split at first colon only",
			in:   "GET https://h/x\nA: b: c\n",
			want: abi.Head{Method: "GET", URL: "https://h/x", Headers: [][2]string{{"A", "b: c"}}},
		},

		{name: "empty input", in: "", wantErr: true},
		{name: "only LF", in: "\n", wantErr: true},
		{name: "no method", in: " https://h/x\n", wantErr: true},
		{name: "missing URL no space", in: "GET\n", wantErr: true},
		{name: "missing URL after space", in: "GET \n", wantErr: true},
		{name: "space inside URL", in: "GET https://h/a b\n", wantErr: true},
		{name: "tab inside URL", in: "GET https://h/a\tb\n", wantErr: true},
		{name: "CR inside URL", in: "GET https://h/a\rb\n", wantErr: true},
		{name: "two CRs at end of request line", in: "GET https://h/x\r\r\n", wantErr: true},
		{name: "tab as separator", in: "GET\thttps://h/x\n", wantErr: true},
		{name: "method not a token", in: "G(E)T https://h/x\n", wantErr: true},
		{name: "header name with space", in: "GET https://h/x\nBad Name: v\n", wantErr: true},
		{name: "space before colon", in: "GET https://h/x\nName : v\n", wantErr: true},
		{name: "empty header name", in: "GET https://h/x\n: v\n", wantErr: true},
		{name: "header without colon", in: "GET https://h/x\nNoColon\n", wantErr: true},
		{name: "CR inside value", in: "GET https://h/x\nA: b\rX-Injected: 1\n", wantErr: true},
		{name: "CR inside name", in: "GET https://h/x\nA\rB: v\n", wantErr: true},
		{name: "lone CR line", in: "GET https://h/x\n\r\r\n", wantErr: true},
		{name: "non-ASCII name", in: "GET https://h/x\nNämé: v\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := abi.ParseHead([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, abi.ErrBadHead) {
					t.Fatalf("ParseHead(%q) = %#v, %v; want ErrBadHead", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHead(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseHead(%q)\n got %#v\nwant %#v", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"",
		"GET https://h/x",
		"POST https://api.example.com/v1/chat/completions\nContent-Type: application/json\n",
		"GET https://h/x\r\nA: b\r\n\r\n",
		"GET https://h/x\nA:   \n",
		"GET https://h/x\nA: b\rc\n",
		"GET https://h/x\nBad Name: v\n",
		"GET \n",
		"GET https://h/x\nA: \u00a0x\u0085\n",
		"GET https://h/x\n\n\nA:b:c\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := abi.ParseHead(b)
		if err != nil {
			if !errors.Is(err, abi.ErrBadHead) {
				t.Fatalf("ParseHead(%q) error %v is not ErrBadHead", b, err)
			}
			return
		}
		enc := abi.AppendHead(nil, h.Method, h.URL, h.Headers)
		h2, err := abi.ParseHead(enc)
		if err != nil {
			t.Fatalf("re-encoded head %q of input %q does not parse: %v", enc, b, err)
		}
		if !reflect.DeepEqual(h, h2) {
			t.Fatalf("round trip of %q changed the head\nfirst  %#v\nsecond %#v", b, h, h2)
		}
	})
}

func ExampleAppendHead() {
	head := abi.AppendHead(nil, "POST", "https://api.example.com/v1/chat/completions", [][2]string{
		{"Content-Type", "application/json"},
		{"Accept", "text/event-stream"},
	})
	fmt.Print(string(head))
	// Output:
	// POST https://api.example.com/v1/chat/completions
	// Content-Type: application/json
	// Accept: text/event-stream
}

// ---------------------------------------------------------------------------
// Manifests

// validManifest returns a manifest that passes Validate; tests change one
// field at a time.
func validManifest() abi.Manifest {
	return abi.Manifest{
		Name:         "openai",
		Version:      "1.2.3",
		ABI:          "1.0",
		Description:  "OpenAI-compatible upstreams",
		Capabilities: []string{abi.CapChat, abi.CapChatStream, abi.CapEmbeddings, abi.CapModels},
		Auth:         abi.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"},
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(m *abi.Manifest)
		wantErr string // substring of the error; "" means valid
	}{
		{name: "valid", mutate: func(m *abi.Manifest) {}},
		{name: "name single char", mutate: func(m *abi.Manifest) { m.Name = "a" }},
		{name: "name with punctuation", mutate: func(m *abi.Manifest) { m.Name = "open.ai_v-2" }},
		{name: "name starting with digit", mutate: func(m *abi.Manifest) { m.Name = "9lives" }},
		{name: "name 64 chars", mutate: func(m *abi.Manifest) { m.Name = strings.Repeat("a", 64) }},
		{name: "name 65 chars", mutate: func(m *abi.Manifest) { m.Name = strings.Repeat("a", 65) }, wantErr: "name"},
		{name: "name empty", mutate: func(m *abi.Manifest) { m.Name = "" }, wantErr: "name"},
		{name: "name upper case", mutate: func(m *abi.Manifest) { m.Name = "OpenAI" }, wantErr: "name"},
		{name: "name leading dash", mutate: func(m *abi.Manifest) { m.Name = "-x" }, wantErr: "name"},
		{name: "name leading dot", mutate: func(m *abi.Manifest) { m.Name = ".x" }, wantErr: "name"},
		{name: "name with space", mutate: func(m *abi.Manifest) { m.Name = "a b" }, wantErr: "name"},
		{name: "name with slash", mutate: func(m *abi.Manifest) { m.Name = "a/b" }, wantErr: "name"},
		{name: "name with trailing newline", mutate: func(m *abi.Manifest) { m.Name = "abc\n" }, wantErr: "name"},

		{name: "version empty", mutate: func(m *abi.Manifest) { m.Version = "" }, wantErr: "version is empty"},
		{name: "version free-form", mutate: func(m *abi.Manifest) { m.Version = "2024-06 nightly" }},

		{name: "abi other major accepted by Validate", mutate: func(m *abi.Manifest) { m.ABI = "2.7" }},
		{name: "abi empty", mutate: func(m *abi.Manifest) { m.ABI = "" }, wantErr: "abi"},
		{name: "abi major only", mutate: func(m *abi.Manifest) { m.ABI = "1" }, wantErr: "abi"},
		{name: "abi three parts", mutate: func(m *abi.Manifest) { m.ABI = "1.0.0" }, wantErr: "abi"},
		{name: "abi negative", mutate: func(m *abi.Manifest) { m.ABI = "-1.0" }, wantErr: "abi"},
		{name: "abi letters", mutate: func(m *abi.Manifest) { m.ABI = "v1.0" }, wantErr: "abi"},

		{name: "capabilities nil", mutate: func(m *abi.Manifest) { m.Capabilities = nil }, wantErr: "capabilities is empty"},
		{name: "capabilities empty", mutate: func(m *abi.Manifest) { m.Capabilities = []string{} }, wantErr: "capabilities is empty"},
		{name: "capability unknown", mutate: func(m *abi.Manifest) { m.Capabilities = []string{"chat", "completions"} }, wantErr: `unknown capability "completions"`},
		{name: "capability wrong case", mutate: func(m *abi.Manifest) { m.Capabilities = []string{"Chat"} }, wantErr: `unknown capability "Chat"`},
		{name: "single capability", mutate: func(m *abi.Manifest) { m.Capabilities = []string{abi.CapModels} }},

		{name: "auth none", mutate: func(m *abi.Manifest) { m.Auth = abi.Auth{Type: "none"} }},
		{name: "auth header custom name", mutate: func(m *abi.Manifest) { m.Auth = abi.Auth{Type: "header", Name: "x-api-key", Format: "{key}"} }},
		{name: "auth header empty name", mutate: func(m *abi.Manifest) { m.Auth.Name = "" }, wantErr: "auth.name"},
		{name: "auth header name with space", mutate: func(m *abi.Manifest) { m.Auth.Name = "X Api Key" }, wantErr: "auth.name"},
		{name: "auth header name with colon", mutate: func(m *abi.Manifest) { m.Auth.Name = "X-Key:" }, wantErr: "auth.name"},
		{name: "auth header format without placeholder", mutate: func(m *abi.Manifest) { m.Auth.Format = "Bearer key" }, wantErr: "auth.format"},
		{name: "auth header format empty", mutate: func(m *abi.Manifest) { m.Auth.Format = "" }, wantErr: "auth.format"},
		{name: "auth query", mutate: func(m *abi.Manifest) { m.Auth = abi.Auth{Type: "query", Name: "key"} }},
		{name: "auth query empty name", mutate: func(m *abi.Manifest) { m.Auth = abi.Auth{Type: "query"} }, wantErr: "auth.name (the query parameter) is empty"},
		{name: "auth type empty", mutate: func(m *abi.Manifest) { m.Auth = abi.Auth{} }, wantErr: "auth.type"},
		{name: "auth type unknown", mutate: func(m *abi.Manifest) { m.Auth = abi.Auth{Type: "basic", Name: "u"} }, wantErr: `auth.type "basic"`},

		{name: "config schema valid", mutate: func(m *abi.Manifest) { m.ConfigSchema = json.RawMessage(`{"type":"object"}`) }},
		{name: "config schema invalid", mutate: func(m *abi.Manifest) { m.ConfigSchema = json.RawMessage(`{"type":`) }, wantErr: "config_schema is not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := validManifest()
			tt.mutate(&m)
			err := m.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "manifest: ") {
				t.Errorf("Validate() = %q, want the manifest: prefix", err)
			}
			if n := len(joined(err)); n != 1 {
				t.Errorf("Validate() reported %d problems, want 1: %v", n, err)
			}
		})
	}
}

// joined returns the errors combined by errors.Join, or err alone.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	m := abi.Manifest{
		Name:         "Bad Name",
		ABI:          "one",
		Capabilities: []string{"chat", "teleport"},
		Auth:         abi.Auth{Type: "header", Name: "", Format: "Bearer"},
		ConfigSchema: json.RawMessage(`{`),
	}
	err := m.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want every problem")
	}
	wants := []string{
		`name "Bad Name"`,
		"version is empty",
		`abi "one"`,
		`unknown capability "teleport"`,
		"auth.name",
		"auth.format",
		"config_schema",
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q:\n%v", w, err)
		}
	}
	if got := len(joined(err)); got != len(wants) {
		t.Errorf("Validate() joined %d errors, want %d:\n%v", got, len(wants), err)
	}
	if got := strings.Count(err.Error(), "\n") + 1; got != len(wants) {
		t.Errorf("error has %d lines, want one per problem (%d):\n%v", got, len(wants), err)
	}

	// The zero manifest has exactly the problems that need no value at all.
	var zero abi.Manifest
	if got := len(joined(zero.Validate())); got != 5 {
		t.Errorf("zero manifest: %d problems, want 5 (name, version, abi, capabilities, auth.type):\n%v", got, zero.Validate())
	}
}

func TestParseManifest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    *abi.Manifest
		wantErr string
	}{
		{
			name: "full",
			in: `{"name":"anthropic","version":"0.1.0","abi":"1.0","description":"Claude",
				"capabilities":["chat","chat_stream"],
				"auth":{"type":"header","name":"x-api-key","format":"{key}"},
				"config_schema":{"type":"object","properties":{"version":{"type":"string"}}},
				"future_field":true}`,
			want: &abi.Manifest{
				Name: "anthropic", Version: "0.1.0", ABI: "1.0", Description: "Claude",
				Capabilities: []string{"chat", "chat_stream"},
				Auth:         abi.Auth{Type: "header", Name: "x-api-key", Format: "{key}"},
				ConfigSchema: json.RawMessage(`{"type":"object","properties":{"version":{"type":"string"}}}`),
			},
		},
		{
			name: "minimal",
			in:   `{"name":"demo","version":"1","abi":"1.0","capabilities":["models"],"auth":{"type":"none"}}`,
			want: &abi.Manifest{Name: "demo", Version: "1", ABI: "1.0", Capabilities: []string{"models"}, Auth: abi.Auth{Type: "none"}},
		},
		{name: "not JSON", in: `name: demo`, wantErr: "manifest: "},
		{name: "truncated JSON", in: `{"name":"demo"`, wantErr: "manifest: "},
		{name: "wrong type", in: `{"name":"demo","version":"1","abi":"1.0","capabilities":"chat","auth":{"type":"none"}}`, wantErr: "manifest: "},
		{name: "empty input", in: ``, wantErr: "manifest: "},
		{name: "null", in: `null`, wantErr: "version is empty"},
		{name: "valid JSON invalid manifest", in: `{"name":"demo","version":"1","abi":"1.0","capabilities":["chat"],"auth":{"type":"query"}}`, wantErr: "auth.name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := abi.ParseManifest([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseManifest() error = %v, want one containing %q", err, tt.wantErr)
				}
				if got != nil {
					t.Fatalf("ParseManifest() returned %+v along with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseManifest(): %v", err)
			}
			// Compare the schema by value: json.RawMessage keeps the input's
			// bytes, including whitespace.
			gotSchema, wantSchema := compactJSON(t, got.ConfigSchema), compactJSON(t, tt.want.ConfigSchema)
			g, w := *got, *tt.want
			g.ConfigSchema, w.ConfigSchema = nil, nil
			if !reflect.DeepEqual(g, w) || gotSchema != wantSchema {
				t.Fatalf("ParseManifest()\n got %+v schema %s\nwant %+v schema %s", g, gotSchema, w, wantSchema)
			}
		})
	}
}

func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	if len(b) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("compact %s: %v", b, err)
	}
	return buf.String()
}

func TestABIVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		abi          string
		major, minor int
		wantErr      bool
	}{
		{abi: "1.0", major: 1, minor: 0},
		{abi: "0.0", major: 0, minor: 0},
		{abi: "12.34", major: 12, minor: 34},
		{abi: "", wantErr: true},
		{abi: ".", wantErr: true},
		{abi: "1", wantErr: true},
		{abi: "1.", wantErr: true},
		{abi: ".1", wantErr: true},
		{abi: "1.0.0", wantErr: true},
		{abi: "1.x", wantErr: true},
		{abi: "x.1", wantErr: true},
		{abi: "-1.0", wantErr: true},
		{abi: "1.-2", wantErr: true},
		{abi: " 1.0", wantErr: true},
		{abi: "1.0 ", wantErr: true},
		{abi: "99999999999999999999.0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.abi), func(t *testing.T) {
			t.Parallel()
			m := abi.Manifest{ABI: tt.abi}
			major, minor, err := m.ABIVersion()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ABIVersion() = %d, %d, nil; want an error", major, minor)
				}
				if major != 0 || minor != 0 {
					t.Errorf("ABIVersion() returned %d.%d along with an error", major, minor)
				}
				if want := fmt.Sprintf("%d.%d", abi.Major, abi.Minor); !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not show the expected form %q", err, want)
				}
				return
			}
			if err != nil || major != tt.major || minor != tt.minor {
				t.Fatalf("ABIVersion() = %d, %d, %v; want %d, %d, nil", major, minor, err, tt.major, tt.minor)
			}
		})
	}
}

func TestManifestHas(t *testing.T) {
	t.Parallel()
	m := abi.Manifest{Capabilities: []string{abi.CapChat, abi.CapModels}}
	for capability, want := range map[string]bool{
		abi.CapChat: true, abi.CapModels: true, abi.CapChatStream: false, abi.CapEmbeddings: false, "": false,
	} {
		if got := m.Has(capability); got != want {
			t.Errorf("Has(%q) = %v, want %v", capability, got, want)
		}
	}
}

func TestStringers(t *testing.T) {
	t.Parallel()
	ops := map[abi.Op]string{abi.OpChat: "chat", abi.OpChatStream: "chat_stream", abi.OpEmbeddings: "embeddings", abi.OpModels: "models", abi.OpMessages: "messages", abi.OpMessagesStream: "messages_stream", 0: "unknown", 99: "unknown"}
	for op, want := range ops {
		if got := op.String(); got != want {
			t.Errorf("Op(%d).String() = %q, want %q", int32(op), got, want)
		}
	}
	statuses := map[abi.Status]string{
		abi.StatusOK: "ok", 7: "ok", abi.StatusInvalid: "invalid argument", abi.StatusDenied: "destination denied",
		abi.StatusTimeout: "timeout", abi.StatusUnreachable: "upstream unreachable", abi.StatusLimit: "limit reached",
		abi.StatusClientGone: "client gone", abi.StatusIO: "upstream i/o error", abi.StatusNotFound: "not found", -100: "unknown status",
	}
	for s, want := range statuses {
		if got := s.String(); got != want {
			t.Errorf("Status(%d).String() = %q, want %q", int32(s), got, want)
		}
	}
}

// ---------------------------------------------------------------------------
// Wasm custom sections

var preamble = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// uleb encodes v as unsigned LEB128.
func uleb(v uint32) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}

// section encodes one top-level section.
func section(id byte, payload []byte) []byte {
	out := append([]byte{id}, uleb(uint32(len(payload)))...)
	return append(out, payload...)
}

// custom encodes a custom section (id 0) with a name and data.
func custom(name string, data []byte) []byte {
	payload := append(uleb(uint32(len(name))), name...)
	return section(0, append(payload, data...))
}

// module concatenates the preamble and the given sections.
func module(sections ...[]byte) []byte {
	out := append([]byte(nil), preamble...)
	for _, s := range sections {
		out = append(out, s...)
	}
	return out
}

// raw builds bytes by concatenation, for hand-made malformed input.
func raw(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

const manifestJSON = `{"name":"demo","version":"1.0.0","abi":"1.0","capabilities":["chat"],"auth":{"type":"none"}}`

func TestManifestRoundTripOnMinimalModule(t *testing.T) {
	t.Parallel()
	wasm, err := abi.WithManifest(preamble, []byte(manifestJSON))
	if err != nil {
		t.Fatalf("WithManifest: %v", err)
	}
	want := module(custom(abi.ManifestSection, []byte(manifestJSON)))
	if !bytes.Equal(wasm, want) {
		t.Fatalf("WithManifest bytes\n got % x\nwant % x", wasm, want)
	}
	got, err := abi.ManifestFromWasm(wasm)
	if err != nil {
		t.Fatalf("ManifestFromWasm: %v", err)
	}
	if string(got) != manifestJSON {
		t.Fatalf("ManifestFromWasm = %s, want %s", got, manifestJSON)
	}
	m, err := abi.ParseManifest(got)
	if err != nil {
		t.Fatalf("ParseManifest: %v", err)
	}
	if m.Name != "demo" || !m.Has(abi.CapChat) {
		t.Fatalf("manifest decoded as %+v", m)
	}
}

func TestWithManifestSizes(t *testing.T) {
	t.Parallel()
	// Sizes on both sides of each LEB128 length boundary, for the section
	// size (which includes the name) as well as the data.
	nameLen := 1 + len(abi.ManifestSection)
	for _, n := range []int{0, 1, 127 - nameLen, 128 - nameLen, 200, 16383 - nameLen, 16384 - nameLen, 70000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			m := bytes.Repeat([]byte{'m'}, n)
			wasm, err := abi.WithManifest(preamble, m)
			if err != nil {
				t.Fatalf("WithManifest: %v", err)
			}
			if want := module(custom(abi.ManifestSection, m)); !bytes.Equal(wasm, want) {
				t.Fatalf("WithManifest produced %d bytes, want %d bytes of the reference encoding", len(wasm), len(want))
			}
			got, err := abi.ManifestFromWasm(wasm)
			if err != nil {
				t.Fatalf("ManifestFromWasm: %v", err)
			}
			if !bytes.Equal(got, m) {
				t.Fatalf("ManifestFromWasm returned %d bytes, want %d", len(got), n)
			}
		})
	}
}

func TestWithManifestReplacesAndPreserves(t *testing.T) {
	t.Parallel()
	typeSec := section(1, []byte{0x01, 0x60, 0x00, 0x00})
	importSec := section(2, bytes.Repeat([]byte{0xAB}, 300)) // 2-byte size
	nameSec := custom("name", []byte{0x00, 0x04, 'd', 'e', 'm', 'o'})
	producers := custom("producers", []byte("go 1.26"))
	codeSec := section(10, []byte{0x01, 0x02, 0x00, 0x0b})
	// A custom section whose name merely starts like the manifest's.
	lookalike := custom(abi.ManifestSection+".bak", []byte(`{"old":true}`))
	// A size written with a redundant (non-minimal) LEB128 byte must be
	// copied as is.
	padded := raw([]byte{11}, []byte{0x83, 0x00}, []byte{0x01, 0x02, 0x03})
	oldManifest := custom(abi.ManifestSection, []byte(`{"name":"old"}`))
	newManifest := []byte(manifestJSON)

	tests := []struct {
		name string
		in   []byte
		want []byte
	}{
		{
			name: "no manifest yet",
			in:   module(typeSec, importSec, nameSec, codeSec),
			want: module(typeSec, importSec, nameSec, codeSec, custom(abi.ManifestSection, newManifest)),
		},
		{
			name: "manifest in the middle is moved to the end",
			in:   module(typeSec, oldManifest, importSec, producers, codeSec),
			want: module(typeSec, importSec, producers, codeSec, custom(abi.ManifestSection, newManifest)),
		},
		{
			name: "manifest first",
			in:   module(oldManifest, typeSec),
			want: module(typeSec, custom(abi.ManifestSection, newManifest)),
		},
		{
			name: "manifest already last",
			in:   module(typeSec, codeSec, oldManifest),
			want: module(typeSec, codeSec, custom(abi.ManifestSection, newManifest)),
		},
		{
			name: "every duplicate removed",
			in:   module(oldManifest, typeSec, oldManifest, codeSec, oldManifest),
			want: module(typeSec, codeSec, custom(abi.ManifestSection, newManifest)),
		},
		{
			name: "look-alike custom sections kept",
			in:   module(lookalike, typeSec, oldManifest),
			want: module(lookalike, typeSec, custom(abi.ManifestSection, newManifest)),
		},
		{
			name: "non-minimal LEB128 size copied verbatim",
			in:   module(typeSec, padded, oldManifest),
			want: module(typeSec, padded, custom(abi.ManifestSection, newManifest)),
		},
		{
			name: "empty sections kept",
			in:   module(section(12, nil), custom("", nil)),
			want: module(section(12, nil), custom("", nil), custom(abi.ManifestSection, newManifest)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := bytes.Clone(tt.in)
			got, err := abi.WithManifest(in, newManifest)
			if err != nil {
				t.Fatalf("WithManifest: %v", err)
			}
			if !bytes.Equal(in, tt.in) {
				t.Fatal("WithManifest modified its input")
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("WithManifest\n got % x\nwant % x", got, tt.want)
			}
			m, err := abi.ManifestFromWasm(got)
			if err != nil {
				t.Fatalf("ManifestFromWasm of the result: %v", err)
			}
			if !bytes.Equal(m, newManifest) {
				t.Fatalf("ManifestFromWasm = %s, want %s", m, newManifest)
			}
			if n := bytes.Count(got, []byte(abi.ManifestSection)); n != 1+bytes.Count(tt.in, []byte(abi.ManifestSection+".bak")) {
				t.Fatalf("result names the manifest section %d times", n)
			}
			// Running it again is a no-op.
			again, err := abi.WithManifest(got, newManifest)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("second WithManifest changed the module (err %v)", err)
			}
		})
	}
}

func TestManifestFromWasm(t *testing.T) {
	t.Parallel()
	m := []byte(manifestJSON)
	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantIs  error // checked with errors.Is when not nil
		wantErr bool
	}{
		{name: "only section", in: module(custom(abi.ManifestSection, m)), want: m},
		{name: "among other sections", in: module(section(1, []byte{0}), custom("name", nil), custom(abi.ManifestSection, m), section(10, []byte{0})), want: m},
		{name: "empty manifest payload", in: module(custom(abi.ManifestSection, nil)), want: []byte{}},

		{name: "empty input", in: nil, wantIs: abi.ErrNotWasm},
		{name: "short preamble", in: preamble[:7], wantIs: abi.ErrNotWasm},
		{name: "wrong magic", in: raw([]byte("\x7fELF"), preamble[4:]), wantIs: abi.ErrNotWasm},
		{name: "wrong version", in: raw(preamble[:4], []byte{0x02, 0, 0, 0}), wantIs: abi.ErrNotWasm},
		{name: "preamble only", in: preamble, wantIs: abi.ErrNoManifest},
		{name: "only other sections", in: module(section(1, []byte{0}), custom("name", []byte("x"))), wantIs: abi.ErrNoManifest},
		{name: "look-alike name", in: module(custom(abi.ManifestSection+"x", m), custom("llmproxy.manifes", m)), wantIs: abi.ErrNoManifest},
		{name: "duplicate manifest", in: module(custom(abi.ManifestSection, m), custom(abi.ManifestSection, m)), wantIs: abi.ErrDuplicateSection},
		{name: "duplicate with empty first", in: module(custom(abi.ManifestSection, nil), section(1, nil), custom(abi.ManifestSection, m)), wantIs: abi.ErrDuplicateSection},

		{name: "section id without size", in: raw(preamble, []byte{1}), wantErr: true},
		{name: "truncated size LEB128", in: raw(preamble, []byte{1, 0x80}), wantErr: true},
		{name: "truncated size LEB128 at four bytes", in: raw(preamble, []byte{1, 0xff, 0xff, 0xff, 0xff}), wantErr: true},
		{name: "size LEB128 overflows u32", in: raw(preamble, []byte{1, 0xff, 0xff, 0xff, 0xff, 0x1f}), wantErr: true},
		{name: "size LEB128 six bytes", in: raw(preamble, []byte{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}), wantErr: true},
		{name: "size past end", in: raw(preamble, []byte{1, 5, 0, 0}), wantErr: true},
		{name: "size past end by one", in: raw(preamble, section(1, []byte{1, 2, 3})[:4]), wantErr: true},
		{name: "max u32 size", in: raw(preamble, []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}, []byte{0}), wantErr: true},
		{name: "bad section after manifest", in: raw(module(custom(abi.ManifestSection, m)), []byte{1, 9}), wantErr: true},
		{name: "custom section without name", in: module(section(0, nil)), wantErr: true},
		{name: "custom name longer than payload", in: module(section(0, []byte{5, 'a', 'b'})), wantErr: true},
		{name: "custom name length truncated", in: module(section(0, []byte{0x80})), wantErr: true},
		{name: "custom name length overflows", in: module(section(0, []byte{0xff, 0xff, 0xff, 0xff, 0x7f})), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := abi.ManifestFromWasm(tt.in)
			switch {
			case tt.wantIs != nil:
				if !errors.Is(err, tt.wantIs) {
					t.Fatalf("ManifestFromWasm() = %q, %v; want %v", got, err, tt.wantIs)
				}
			case tt.wantErr:
				if err == nil {
					t.Fatalf("ManifestFromWasm() = %q, nil; want an error", got)
				}
			default:
				if err != nil {
					t.Fatalf("ManifestFromWasm(): %v", err)
				}
				if !bytes.Equal(got, tt.want) {
					t.Fatalf("ManifestFromWasm() = %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestWithManifestRejectsMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     []byte
		wantIs error
	}{
		{name: "not wasm", in: []byte("hello, world"), wantIs: abi.ErrNotWasm},
		{name: "empty", in: nil, wantIs: abi.ErrNotWasm},
		{name: "truncated size", in: raw(preamble, []byte{1, 0x80})},
		{name: "size overflows", in: raw(preamble, []byte{1, 0x80, 0x80, 0x80, 0x80, 0x10})},
		{name: "size past end", in: raw(preamble, []byte{2, 0x7f, 0})},
		{name: "oversized after a good section", in: raw(module(section(1, []byte{0})), []byte{10, 0xff, 0xff, 0xff, 0xff, 0x0f})},
		{name: "custom without name", in: module(section(0, nil))},
		{name: "custom name past payload", in: module(section(0, []byte{2, 'x'}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := abi.WithManifest(tt.in, []byte(manifestJSON))
			if err == nil {
				t.Fatalf("WithManifest() = % x, nil; want an error", got)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("WithManifest() error = %v, want %v", err, tt.wantIs)
			}
			if got != nil {
				t.Fatalf("WithManifest() returned %d bytes along with an error", len(got))
			}
		})
	}
}

func FuzzManifestFromWasm(f *testing.F) {
	m := []byte(manifestJSON)
	seeds := [][]byte{
		nil,
		preamble,
		module(custom(abi.ManifestSection, m)),
		module(section(1, []byte{0x01, 0x60, 0x00, 0x00}), custom("name", []byte("x")), custom(abi.ManifestSection, m), section(10, []byte{0})),
		module(custom(abi.ManifestSection, m), custom(abi.ManifestSection, nil)),
		raw(preamble, []byte{1, 0x80}),
		raw(preamble, []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}),
		module(section(0, []byte{5, 'a'})),
		[]byte("\x00asm\x01\x00\x00"),
	}
	for _, s := range seeds {
		f.Add(s, m)
		f.Add(s, []byte{})
	}
	f.Fuzz(func(t *testing.T, wasm, manifest []byte) {
		in := bytes.Clone(wasm)
		_, _ = abi.ManifestFromWasm(wasm)

		out, err := abi.WithManifest(wasm, manifest)
		if !bytes.Equal(in, wasm) {
			t.Fatal("WithManifest modified its input")
		}
		if err != nil {
			if out != nil {
				t.Fatalf("WithManifest returned %d bytes along with error %v", len(out), err)
			}
			return
		}
		got, err := abi.ManifestFromWasm(out)
		if err != nil {
			t.Fatalf("ManifestFromWasm of WithManifest output failed: %v\ninput % x", err, wasm)
		}
		if !bytes.Equal(got, manifest) {
			t.Fatalf("ManifestFromWasm = %q, want %q", got, manifest)
		}
		again, err := abi.WithManifest(out, manifest)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("WithManifest is not idempotent (err %v)", err)
		}
	})
}
