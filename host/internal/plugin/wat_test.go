package plugin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// The WAT plugin (host/internal/testplugins/watrelay) is the OpenAI relay
// written by hand in WebAssembly text from sdk/ABI.md alone, without the Go
// SDK: these tests hold the specification to being enough to write a
// plugin.

// loadWAT assembles relay.wat with wabt's wat2wasm, packs its manifest and
// loads it. Without wat2wasm on PATH the test is skipped, unless
// LLMPROXY_REQUIRE_WABT=1 (CI) makes that a failure.
func loadWAT(t *testing.T, limits plugin.Limits) *plugin.Version {
	t.Helper()
	wat2wasm, err := exec.LookPath("wat2wasm")
	if err != nil {
		if os.Getenv("LLMPROXY_REQUIRE_WABT") == "1" {
			t.Fatal("wat2wasm is required (LLMPROXY_REQUIRE_WABT=1) but not on PATH: install wabt, e.g. apt-get install wabt")
		}
		t.Skip("wat2wasm not on PATH: install wabt (e.g. apt-get install wabt) to run the WAT plugin tests")
	}
	dir := filepath.Join(testplugins.Root(), "host", "internal", "testplugins", "watrelay")
	out := filepath.Join(t.TempDir(), "watrelay.wasm")
	if b, err := exec.Command(wat2wasm, filepath.Join(dir, "relay.wat"), "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	packed, err := abi.WithManifest(wasm, manifest)
	if err != nil {
		t.Fatal(err)
	}
	v, err := plugin.Load(context.Background(), packed, plugin.LoadOptions{File: "watrelay.wasm", Limits: limits, Cache: cache()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Retire)
	if v.Manifest.Name != "watrelay" {
		t.Fatalf("manifest name %q", v.Manifest.Name)
	}
	return v
}

// watEgress lets a stream reach baseURL's host, with the test key attached
// as the manifest says.
func watEgress(t testing.TB, v *plugin.Version, baseURL string) *egress.Client {
	t.Helper()
	a := v.Manifest.Auth
	eg, err := egress.New(egress.Options{BaseURL: baseURL, AllowPrivateNetwork: true, Secret: "test-key",
		Auth: egress.Auth{Type: a.Type, Name: a.Name, Format: a.Format}})
	if err != nil {
		t.Fatal(err)
	}
	return eg
}

// TestWATRelayGolden runs the OpenAI plugin's golden cases against the WAT
// relay: it must send and emit exactly what the Go plugin does.
func TestWATRelayGolden(t *testing.T) {
	v := loadWAT(t, plugin.Limits{})
	goldenCases(t, v, testplugins.Root()+"/plugins/openai/testdata", "/v1", "{}")
	if st := v.Stats(); st.Failures != 0 {
		t.Fatalf("an instance failed: %+v", st)
	}
}

// watChunk is event j of stream i of the interleaving upstream.
func watChunk(i, j int) string {
	return fmt.Sprintf(`{"choices":[{"index":0,"delta":{"content":"%d:%d"}}]}`, i, j)
}

// TestWATRelayInterleaved runs 200 concurrent streams on one instance of
// the WAT plugin, twice (the second round on the table the first one grew
// and emptied), against an upstream that answers each according to its
// model: a relayed SSE stream, a relayed JSON body, a 429 with an error body,
// a 503 with an empty body, or a stream whose connection drops midway.
// Every stream must get exactly its own answer, each error its own status.
func TestWATRelayInterleaved(t *testing.T) {
	v := loadWAT(t, plugin.Limits{MaxInstances: 1})
	const n, events, dropAt = 200, 20, 5
	// No answer starts before the test saw all n requests of a round
	// arrive, so every stream of the round is open on the instance at once.
	var (
		mu      sync.Mutex
		arrived int
	)
	release := []chan struct{}{make(chan struct{}), make(chan struct{})}
	gate := func() <-chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		arrived++
		return release[min((arrived-1)/n, len(release)-1)]
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case <-gate():
		case <-time.After(10 * time.Second):
		}
		var req struct{ Model string }
		if err := json.Unmarshal(body, &req); err != nil || r.Header.Get("Authorization") != "Bearer test-key" {
			http.Error(w, "bad request or credentials", http.StatusBadRequest)
			return
		}
		kind, idx, _ := strings.Cut(req.Model, "-")
		i, _ := strconv.Atoi(idx)
		time.Sleep(time.Duration(i%7) * time.Millisecond) // heads arrive out of order
		switch kind {
		case "limited":
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprintf(w, `{"error":{"message":"slow down %d","type":"requests"}}`, i)
		case "empty":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "body":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"object":"chat.completion","id":"%d"}`, i)
		case "stream", "drop":
			w.Header().Set("Content-Type", "text/event-stream")
			f := w.(http.Flusher)
			for j := 0; j < events; j++ {
				if kind == "drop" && j == dropAt {
					panic(http.ErrAbortHandler) // the connection drops
				}
				fmt.Fprintf(w, "data: %s\n\n", watChunk(i, j))
				f.Flush()
				if j%5 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			fmt.Fprint(w, "data: [DONE]\n\n")
		default:
			http.Error(w, "unknown model", http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	eg := watEgress(t, v, srv.URL+"/v1")
	config := guestConfig(srv.URL + "/v1")
	kinds := []string{"stream", "limited", "body", "stream", "empty", "drop", "limited", "stream"}

	for round := 0; round < 2; round++ {
		recs := make([]*recorder, n)
		for i := range recs {
			op, req := abi.OpChatStream, `{"model":"%s-%d","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`
			if kinds[i%len(kinds)] == "body" {
				op, req = abi.OpChat, `{"model":"%s-%d","messages":[{"role":"user","content":"hi"}]}`
			}
			recs[i] = newRecorder()
			if _, err := v.Open(plugin.Invocation{Op: op, Request: []byte(fmt.Sprintf(req, kinds[i%len(kinds)], i)),
				Config: config, Egress: eg, Sink: recs[i]}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return arrived == (round+1)*n })
		if st := v.Stats(); st.Streams != n || st.Instances != 1 {
			t.Fatalf("round %d: want all %d streams open on one instance: %+v", round, n, st)
		}
		close(release[round])
		for i, rec := range recs {
			err := rec.wait(t)
			emits := rec.snapshot()
			var f *plugin.Failure
			isFail := errors.As(err, &f)
			chunks := 0
			for _, e := range emits {
				if e.Kind == "chunk" {
					if want := watChunk(i, chunks); string(e.Data) != want {
						t.Fatalf("round %d stream %d chunk %d: %s, want %s", round, i, chunks, e.Data, want)
					}
					chunks++
				}
			}
			switch kind := kinds[i%len(kinds)]; kind {
			case "stream":
				if err != nil || chunks != events || len(emits) != events {
					t.Fatalf("round %d stream %d (%s): %d chunks, end %v, emits %v", round, i, kind, chunks, err, emits)
				}
			case "body":
				if want := fmt.Sprintf(`body {"object":"chat.completion","id":"%d"}`, i); err != nil || len(emits) != 1 || emits[0].String() != want {
					t.Fatalf("round %d stream %d (%s): end %v, emits %v, want %s", round, i, kind, err, emits, want)
				}
			case "limited":
				if want := fmt.Sprintf(`{"error":{"message":"slow down %d","type":"requests"}}`, i); !isFail || f.Status != 429 || string(f.Body) != want || chunks != 0 {
					t.Fatalf("round %d stream %d (%s): end %v, emits %v, want fail 429 %s", round, i, kind, err, emits, want)
				}
			case "empty":
				if !isFail || f.Status != 503 || string(f.Body) != "upstream returned HTTP 503" || chunks != 0 {
					t.Fatalf("round %d stream %d (%s): end %v, emits %v, want fail 503 upstream returned HTTP 503", round, i, kind, err, emits)
				}
			case "drop":
				if !isFail || f.Status != 502 || string(f.Body) != "upstream request failed: IO" || chunks != dropAt {
					t.Fatalf("round %d stream %d (%s): %d chunks, end %v, want %d chunks then fail 502 upstream request failed: IO", round, i, kind, chunks, err, dropAt)
				}
			}
		}
		waitFor(t, func() bool { return v.Stats().Streams == 0 })
	}
	st := v.Stats()
	if st.Failures != 0 || st.Created != 1 || st.StreamsTotal != 2*n {
		t.Fatalf("want every stream on one instance that never failed: %+v", st)
	}
	t.Logf("%d streams on one instance, %d callbacks", st.StreamsTotal, st.Callbacks)
}

// TestWATRelayEdgeCases: provider configs the relay must read right or
// refuse cleanly (escapes, whitespace, a nested base_url, not JSON), a
// request far larger than the guest's initial memory, and transport
// failures. None of them may cost the instance.
func TestWATRelayEdgeCases(t *testing.T) {
	// A generous upstream timeout for every case but the one about the
	// timeout: a 3 MB request under -race on a busy machine may take
	// longer than a short one.
	v := loadWAT(t, plugin.Limits{UpstreamTimeout: time.Minute})
	vShort := loadWAT(t, plugin.Limits{UpstreamTimeout: 300 * time.Millisecond})
	type request struct {
		method, path, accept, contentType string
		body                              []byte
	}
	var (
		mu   sync.Mutex
		last request
	)
	received := func() request {
		mu.Lock()
		defer mu.Unlock()
		return last
	}
	bigError := []byte(`{"error":{"message":"` + strings.Repeat("e", 200<<10) + `","type":"invalid_request_error"}}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		last = request{r.Method, r.URL.Path, r.Header.Get("Accept"), r.Header.Get("Content-Type"), body}
		mu.Unlock()
		switch {
		case bytes.Contains(body, []byte(`"model":"slow"`)):
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		case bytes.Contains(body, []byte(`"model":"bigerror"`)):
			w.WriteHeader(http.StatusBadRequest)
			w.Write(bigError)
		case bytes.Contains(body, []byte(`"model":"empty500"`)):
			w.WriteHeader(http.StatusInternalServerError)
		case bytes.Contains(body, []byte(`"model":"nochunk"`)):
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: [DONE]\n\n")
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"object":"chat.completion","received":%d}`, len(body))
		}
	}))
	defer srv.Close()
	base := srv.URL + "/v1"
	escaped := strings.ReplaceAll(base, "/", `\/`)
	escaped = strings.Replace(escaped, `\/v1`, `\u002Fv1`, 1)
	chat := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	big := []byte(`{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("y", 3<<20) + `"}]}`)
	ok := fmt.Sprintf(`{"object":"chat.completion","received":%d}`, len(chat))

	cases := []struct {
		name    string
		op      abi.Op
		config  string
		request []byte
		want    string // the emits, or the failure, as "status body"
		path    string // the upstream path, when it is reached
	}{
		{"escaped base_url", abi.OpChat, `{"base_url":"` + escaped + `","options":{},"provider":"p"}`, chat, "body " + ok, "/v1/chat/completions"},
		{"whitespace", abi.OpChat, "{ \"options\" : {\"base_url\":\"https://evil.example\"} ,\n \"base_url\" : \"" + base + "\" }", chat, "body " + ok, "/v1/chat/completions"},
		{"embeddings", abi.OpEmbeddings, string(guestConfig(base)), []byte(`{"model":"e","input":"x"}`), `body {"object":"chat.completion","received":25}`, "/v1/embeddings"},
		{"models", abi.OpModels, string(guestConfig(base)), nil, `body {"object":"chat.completion","received":0}`, "/v1/models"},
		{"large request", abi.OpChat, string(guestConfig(base)), big, fmt.Sprintf(`body {"object":"chat.completion","received":%d}`, len(big)), "/v1/chat/completions"},
		{"nested base_url only", abi.OpChat, `{"options":{"base_url":"` + base + `"},"provider":"p"}`, chat, "fail 502 watrelay: the provider config has no base_url string", ""},
		{"base_url not a string", abi.OpChat, `{"base_url":42}`, chat, "fail 502 watrelay: the provider config has no base_url string", ""},
		{"config not JSON", abi.OpChat, `{"base_url":`, chat, "fail 502 watrelay: provider config: MALFORMED", ""},
		{"config empty", abi.OpChat, ``, chat, "fail 502 watrelay: provider config: MALFORMED", ""},
		{"config an array", abi.OpChat, `["base_url","x"]`, chat, "fail 502 watrelay: the provider config has no base_url string", ""},
		{"empty base_url", abi.OpChat, `{"base_url":""}`, chat, "fail 502 watrelay: base_url is not a plain URL", ""},
		{"header smuggling", abi.OpChat, `{"base_url":"` + base + `\nX-Evil: 1"}`, chat, "fail 502 watrelay: base_url is not a plain URL", ""},
		{"unsupported escape", abi.OpChat, `{"base_url":"` + base + `\u00e9"}`, chat, "fail 502 watrelay: base_url is not a plain URL", ""},
		{"large error body", abi.OpChat, string(guestConfig(base)), []byte(`{"model":"bigerror"}`), "fail 400 " + string(bigError), "/v1/chat/completions"},
		{"empty error body", abi.OpChat, string(guestConfig(base)), []byte(`{"model":"empty500"}`), "fail 500 upstream returned HTTP 500", "/v1/chat/completions"},
		{"upstream timeout", abi.OpChat, string(guestConfig(base)), []byte(`{"model":"slow"}`), "fail 504 upstream request failed: TIMEOUT", "/v1/chat/completions"},
		{"unreachable", abi.OpChat, string(guestConfig("http://127.0.0.1:1/v1")), chat, "fail 502 upstream request failed: UNREACHABLE", ""},
		{"denied host", abi.OpChat, string(guestConfig("http://upstream.invalid/v1")), chat, "fail 502 upstream request failed: DENIED", ""},
	}
	// Port 1 of the upstream's host is granted too (and nothing listens
	// there), for the unreachable case.
	a := v.Manifest.Auth
	eg, err := egress.New(egress.Options{BaseURL: base, ExtraHosts: []string{"127.0.0.1:1"}, AllowPrivateNetwork: true,
		Secret: "test-key", Auth: egress.Auth{Type: a.Type, Name: a.Name, Format: a.Format}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			last = request{}
			mu.Unlock()
			rec := newRecorder()
			ver := v
			if c.name == "upstream timeout" {
				ver = vShort
			}
			if _, err := ver.Open(plugin.Invocation{Op: c.op, Request: c.request, Config: []byte(c.config), Egress: eg, Sink: rec}); err != nil {
				t.Fatal(err)
			}
			err := rec.wait(t)
			var parts []string
			for _, e := range rec.snapshot() {
				parts = append(parts, e.String())
			}
			if s := strings.Join(parts, "\n"); s != c.want {
				t.Fatalf("got %q (end %v)\nwant %q", s, err, c.want)
			}
			got := received()
			if got.path != c.path {
				t.Fatalf("upstream path %q, want %q", got.path, c.path)
			}
			if c.path == "" {
				return
			}
			wantMethod, wantAccept, wantCT := "POST", "application/json", "application/json"
			if c.op == abi.OpModels {
				wantMethod, wantCT = "GET", ""
			}
			if got.method != wantMethod || got.accept != wantAccept || got.contentType != wantCT {
				t.Fatalf("upstream got %s, Accept %q, Content-Type %q", got.method, got.accept, got.contentType)
			}
			if c.op != abi.OpModels && !bytes.Equal(got.body, c.request) {
				t.Fatalf("upstream body differs from the request (%d bytes, want %d)", len(got.body), len(c.request))
			}
		})
	}

	t.Run("stream without chunks", func(t *testing.T) {
		rec := newRecorder()
		if _, err := v.Open(plugin.Invocation{Op: abi.OpChatStream, Request: []byte(`{"model":"nochunk","stream":true}`),
			Config: guestConfig(base), Egress: eg, Sink: rec}); err != nil {
			t.Fatal(err)
		}
		// The guest finishes the relayed stream; with no chunk sent, the
		// client's 502 plugin_no_response is the server's business (§5.10).
		if err := rec.wait(t); err != nil || len(rec.snapshot()) != 0 {
			t.Fatalf("end %v, emits %v; want a finished stream without chunks", err, rec.snapshot())
		}
		if got := received(); got.accept != "text/event-stream" {
			t.Fatalf("Accept %q", got.accept)
		}
	})

	for _, ver := range []*plugin.Version{v, vShort} {
		waitFor(t, func() bool { return ver.Stats().Streams == 0 })
		if st := ver.Stats(); st.Failures != 0 {
			t.Fatalf("an instance failed: %+v", st)
		}
	}

	t.Run("memory cap", func(t *testing.T) {
		// A request larger than the memory cap: memory.grow fails, and the
		// guest fails the stream instead of trapping.
		small := loadWAT(t, plugin.Limits{MemoryPages: 8})
		rec := newRecorder()
		if _, err := small.Open(plugin.Invocation{Op: abi.OpChat, Request: big, Config: guestConfig(base), Egress: eg, Sink: rec}); err != nil {
			t.Fatal(err)
		}
		var f *plugin.Failure
		if err := rec.wait(t); !errors.As(err, &f) || f.Status != 502 || string(f.Body) != "watrelay: request_read: out of memory" {
			t.Fatalf("end %v, want fail 502 watrelay: request_read: out of memory", err)
		}
		okRec := newRecorder()
		if _, err := small.Open(plugin.Invocation{Op: abi.OpChat, Request: chat, Config: guestConfig(base), Egress: eg, Sink: okRec}); err != nil {
			t.Fatal(err)
		}
		if err := okRec.wait(t); err != nil {
			t.Fatalf("the next stream: %v", err)
		}
		if st := small.Stats(); st.Failures != 0 {
			t.Fatalf("an instance failed: %+v", st)
		}
	})
}
